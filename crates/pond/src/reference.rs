//! `pond config reference`: the configuration reference (docs/configuration.md),
//! generated from the clap definitions in `cli.rs` so it cannot drift: every
//! flag with its environment variable, config-file key, default and help
//! text, plus the few variables that have no flag (secrets). A test compares
//! the committed file with [`markdown`].

use std::fmt::Write as _;

use clap::{Arg, ArgAction, Command, CommandFactory};

use crate::cli::Cli;

/// Settings read only from the environment (secrets stay out of flags, which
/// other local users can see). Name, who reads it, what it is.
const ENV_ONLY: &[(&str, &str, &str)] = &[
    (
        "POND_BACKUP_S3_ENDPOINT",
        "serve, restore",
        "Endpoint of an `s3://` backup target (S3-compatible servers; `http://` allowed). Unset: AWS, or `AWS_ENDPOINT`.",
    ),
    ("POND_BACKUP_S3_REGION", "serve, restore", "Region of an `s3://` backup target (else `AWS_REGION`)."),
    (
        "POND_BACKUP_S3_ACCESS_KEY_ID",
        "serve, restore",
        "Access key of an `s3://` backup target, with `POND_BACKUP_S3_SECRET_ACCESS_KEY` (else the standard `AWS_*` variables).",
    ),
    ("POND_BACKUP_S3_SECRET_ACCESS_KEY", "serve, restore", "Secret key of an `s3://` backup target (never a flag)."),
    (
        "POND_ADMIN_PASSWORD",
        "serve",
        "Password of the bootstrap superuser `admin` on the first start. Without it Pond generates one, \
         prints it once and saves it in `<data-dir>/admin-password` (mode 0600).",
    ),
    (
        "POND_MASTER_KEY",
        "serve, doctor",
        "The master key that seals secrets: 32 bytes as 64 hex characters or base64 (`openssl rand -hex 32`). \
         Without it Pond uses `<data-dir>/system/master.key`, created with mode 0600.",
    ),
    (
        "POND_MASTER_KEY_PREVIOUS",
        "serve, doctor",
        "The previous master key while rotating: secrets sealed with it are re-sealed with `POND_MASTER_KEY` at start.",
    ),
    ("POND_LAKE_S3_ACCESS_KEY_ID", "serve", "Access key id for `--lake-data-path s3://…`."),
    ("POND_LAKE_S3_SECRET_ACCESS_KEY", "serve", "Secret access key for `--lake-data-path s3://…`."),
    ("POND_LAKE_CATALOG_PASSWORD", "serve", "Password for the PostgreSQL database of `--lake-catalog`."),
    ("POND_PASSWORD", "sql, user, grant, revoke, grants, token", "Password of `--user` for the client commands (prompted for when unset)."),
    ("POND_NEW_PASSWORD", "user create, user password", "The new user's or new password (prompted for when unset)."),
    (
        "POND_CONSOLE_DIST",
        "the build (cargo)",
        "Directory of the web console's bundled libraries to embed, instead of `crates/pond-console/web/dist` \
         (made by `scripts/console_assets.sh`).",
    ),
    (
        "POND_FAILPOINT",
        "serve (tests only)",
        "Aborts the process at a named step of a lake flush or compaction (`flush-written`, `flush-registered`, \
         `flush-released`, `compact-merged`), for crash tests. Never set it in production.",
    ),
];

/// Section titles for the argument groups clap derives from the `Args`
/// structs flattened into `pond serve`; unknown groups keep their struct name.
fn group_title(id: &str) -> &str {
    match id {
        "ServeArgs" => "General",
        "ListenArgs" => "Listeners",
        "TlsArgs" => "TLS",
        "EngineArgs" => "Engine (DuckDB)",
        "AuthArgs" => "Authentication",
        "LogArgs" => "Logging",
        "IngestArgs" => "Time-series ingest and the lake",
        "LakeS3Args" => "Lake data on S3 (serve, and restore onto S3)",
        other => other,
    }
}

/// The whole reference as Markdown.
pub fn markdown() -> String {
    let cli = Cli::command();
    let mut out = String::new();
    out.push_str("# Pond configuration reference\n\n");
    out.push_str(
        "<!-- Generated from the command-line definitions (crates/pond/src/cli.rs) by\n     \
         `pond config reference > docs/configuration.md`; do not edit by hand.\n     \
         A test fails when this file is out of date. -->\n\n",
    );
    out.push_str(
        "Every setting of `pond serve` can be given as a flag, as an environment variable or as a key in \
         the TOML file named by `--config` (`POND_CONFIG`); keys are spelled like the flags \
         (`flight-addr = \"0.0.0.0:32010\"`, `flight_addr` also works), lists are TOML arrays \
         (`extensions = [\"icu\", \"ducklake\"]`) and switches booleans. Precedence: flag > environment > \
         file > default. `pond doctor` takes exactly the same settings and checks them instead of serving.\n\n",
    );
    out.push_str("Contents: [`pond serve`](#pond-serve) · [environment only](#environment-only) · [other commands](#other-commands)\n\n");

    let serve = cli.find_subcommand("serve").expect("pond serve is defined");
    out.push_str("## pond serve\n\n");
    push_about(&mut out, serve);
    let args: Vec<&Arg> = visible_args(serve).collect();
    let groups: Vec<(String, Vec<String>)> =
        serve.get_groups().map(|g| (g.get_id().to_string(), g.get_args().map(|a| a.to_string()).collect())).collect();
    let in_group =
        |arg: &Arg| groups.iter().find(|(_, members)| members.iter().any(|m| m == arg.get_id().as_str())).map(|(id, _)| id.clone());
    // The serve struct's own arguments (and any outside a group) first, then each group in definition order.
    let mut sections: Vec<(String, Vec<&Arg>)> = vec![("ServeArgs".to_string(), Vec::new())];
    for &arg in &args {
        let id = in_group(arg).unwrap_or_else(|| "ServeArgs".to_string());
        match sections.iter_mut().find(|(s, _)| *s == id) {
            Some((_, list)) => list.push(arg),
            None => sections.push((id, vec![arg])),
        }
    }
    for (id, list) in sections.iter().filter(|(_, l)| !l.is_empty()) {
        let _ = writeln!(out, "### {}\n", group_title(id));
        out.push_str("| flag | environment | config file | default | description |\n|---|---|---|---|---|\n");
        for arg in list {
            let key = match arg.get_long() {
                Some("config") | None => "—".to_string(),
                Some(long) => code(long),
            };
            let _ = writeln!(out, "| {} | {} | {} | {} | {} |", flag(arg), env(arg), key, default(arg), help(arg));
        }
        out.push('\n');
    }

    out.push_str("## Environment only\n\n");
    out.push_str("Secrets and passwords have no flag (flags are visible to other users of the host).\n\n");
    out.push_str("| variable | read by | description |\n|---|---|---|\n");
    for (name, by, what) in ENV_ONLY {
        let _ = writeln!(out, "| `{name}` | {by} | {} |", escape(&one_line(what)));
    }
    out.push('\n');

    out.push_str("## Other commands\n\n");
    out.push_str("These read flags and environment variables only (no config file).\n\n");
    for sub in cli.get_subcommands().filter(|c| c.get_name() != "serve" && c.get_name() != "doctor") {
        push_command(&mut out, &format!("pond {}", sub.get_name()), sub);
    }
    let doctor = cli.find_subcommand("doctor").expect("pond doctor is defined");
    out.push_str("### pond doctor\n\n");
    push_about(&mut out, doctor);
    out.push_str("Takes every setting of [`pond serve`](#pond-serve), from the same flags, variables and file.\n\n");
    out
}

fn push_about(out: &mut String, cmd: &Command) {
    if let Some(about) = cmd.get_long_about().or(cmd.get_about()) {
        let _ = writeln!(out, "{}\n", one_line(&about.to_string()));
    }
}

fn push_command(out: &mut String, path: &str, cmd: &Command) {
    let _ = writeln!(out, "### {path}\n");
    push_about(out, cmd);
    let args: Vec<&Arg> = visible_args(cmd).collect();
    if !args.is_empty() {
        out.push_str("| argument | environment | default | description |\n|---|---|---|---|\n");
        for arg in args {
            let _ = writeln!(out, "| {} | {} | {} | {} |", flag(arg), env(arg), default(arg), help(arg));
        }
        out.push('\n');
    }
    for sub in cmd.get_subcommands() {
        push_command(out, &format!("{path} {}", sub.get_name()), sub);
    }
}

fn visible_args(cmd: &Command) -> impl Iterator<Item = &Arg> {
    cmd.get_arguments().filter(|a| !a.is_hide_set() && !matches!(a.get_id().as_str(), "help" | "version"))
}

fn takes_value(arg: &Arg) -> bool {
    !matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse | ArgAction::Count)
}

fn value_name(arg: &Arg) -> String {
    arg.get_value_names().and_then(|v| v.first()).map(|s| s.to_string()).unwrap_or_else(|| arg.get_id().as_str().to_ascii_uppercase())
}

fn flag(arg: &Arg) -> String {
    let Some(long) = arg.get_long() else {
        // A positional argument.
        let many = if matches!(arg.get_action(), ArgAction::Append) || arg.get_num_args().is_some_and(|n| n.max_values() > 1) {
            "…"
        } else {
            ""
        };
        return format!("`<{}>{many}`", value_name(arg));
    };
    let mut s = String::new();
    if let Some(short) = arg.get_short() {
        let _ = write!(s, "-{short}, ");
    }
    let _ = write!(s, "--{long}");
    if takes_value(arg) {
        let _ = write!(s, " <{}>", value_name(arg));
    }
    code(&s)
}

fn env(arg: &Arg) -> String {
    arg.get_env().map(|e| code(&e.to_string_lossy())).unwrap_or_else(|| "—".to_string())
}

fn default(arg: &Arg) -> String {
    let values: Vec<String> = arg.get_default_values().iter().map(|v| v.to_string_lossy().to_string()).collect();
    if !values.is_empty() {
        return code(&values.join(","));
    }
    match arg.get_action() {
        ArgAction::SetTrue => code("false"),
        ArgAction::SetFalse => code("true"),
        _ => "—".to_string(),
    }
}

fn help(arg: &Arg) -> String {
    let text = arg.get_long_help().or(arg.get_help()).map(|h| h.to_string()).unwrap_or_default();
    escape(&one_line(&text))
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Escapes text for a table cell: `|` everywhere, `<` and `>` outside code
/// spans (Markdown would take `<data-dir>` for an HTML tag).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_code = false;
    for c in text.chars() {
        match c {
            '`' => in_code = !in_code,
            '|' => out.push('\\'),
            '<' | '>' if !in_code => out.push('\\'),
            _ => {}
        }
        out.push(c);
    }
    out
}

fn code(text: &str) -> String {
    format!("`{}`", text.replace('|', "\\|"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn repo_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    #[test]
    fn committed_reference_is_up_to_date() {
        let path = repo_root().join("docs/configuration.md");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        let generated = markdown();
        if committed != generated {
            let first = committed.lines().zip(generated.lines()).position(|(a, b)| a != b);
            panic!(
                "docs/configuration.md is out of date (first difference at line {}); regenerate it with \
                 `$CARGO_TARGET_DIR/release/pond config reference > docs/configuration.md`",
                first.map(|l| l + 1).unwrap_or_else(|| committed.lines().count().min(generated.lines().count()) + 1)
            );
        }
    }

    #[test]
    fn every_serve_flag_has_an_env_var_and_a_row() {
        let doc = markdown();
        let cli = Cli::command();
        let serve = cli.find_subcommand("serve").unwrap();
        for arg in visible_args(serve) {
            let long = arg.get_long().expect("serve takes no positional arguments");
            let env = arg.get_env().unwrap_or_else(|| panic!("--{long} reads no environment variable"));
            let row = doc.lines().find(|l| l.starts_with(&format!("| `--{long}"))).unwrap_or_else(|| panic!("no row for --{long}"));
            assert!(row.contains(&format!("`{}`", env.to_string_lossy())), "{row}");
        }
        assert!(doc.contains("| `--flight-addr <FLIGHT_ADDR>` | `POND_FLIGHT_ADDR` | `flight-addr` | `127.0.0.1:32010` |"), "{doc}");
        assert!(doc.contains("| `--offline` | `POND_OFFLINE` | `offline` | `false` |"), "{doc}");
    }

    /// Every `POND_…` variable the code reads is in the reference: either a
    /// flag's `env` or a row of [`ENV_ONLY`].
    #[test]
    fn every_environment_variable_in_the_code_is_documented() {
        let doc = markdown();
        let mut missing = Vec::new();
        let crates = repo_root().join("crates");
        let mut stack = vec![crates];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    // The programs' sources; test and example programs have variables of their own.
                    if path.file_name().is_some_and(|n| !["tests", "examples", "benches", "target"].iter().any(|x| n == *x)) {
                        stack.push(path);
                    }
                    continue;
                }
                if path.extension().is_none_or(|e| e != "rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                let mut rest = text.as_str();
                while let Some(at) = rest.find("POND_") {
                    let tail = &rest[at..];
                    let end = tail.find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')).unwrap_or(tail.len());
                    let name = &tail[..end];
                    // `POND_TLS_*`-style prefixes in prose are not names.
                    if !name.ends_with('_') && !doc.contains(&format!("`{name}`")) {
                        missing.push(format!("{name} ({})", path.display()));
                    }
                    rest = &tail[end..];
                }
            }
        }
        assert!(missing.is_empty(), "environment variables missing from the reference: {missing:?}");
    }
}
