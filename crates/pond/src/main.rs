//! The `pond` binary: command line parsing, logging and wiring; the work
//! happens in the library crates.

mod admin;
mod cli;
mod reference;
mod shell;

use std::process::ExitCode;

use cli::{CertCommand, Command, ConfigCommand, ExtensionsCommand};

fn init_logging(format: &str, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal());
    if format.eq_ignore_ascii_case("json") {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = match cli::parse() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Doctor(args) => doctor(args).await,
            Command::Health(args) => health(&args).await,
            Command::Config { command: ConfigCommand::Reference } => {
                print!("{}", reference::markdown());
                Ok(())
            }
            Command::Sql(args) => sql(args).await,
            Command::Version => {
                println!("pond {} (DuckDB {})", env!("CARGO_PKG_VERSION"), pond_engine::extensions::DUCKDB_VERSION);
                Ok(())
            }
            Command::Cert { command: CertCommand::Generate(args) } => cert_generate(&args),
            Command::User { conn, command } => admin::user(&conn, &command).await,
            Command::Grant(args) => admin::grant(&args, false).await,
            Command::Revoke(args) => admin::grant(&args, true).await,
            Command::Grants { conn, for_user } => admin::grants(&conn, for_user.as_deref()).await,
            Command::Token { conn, command } => admin::token(&conn, &command).await,
            Command::Backup { conn, to } => admin::backup(&conn, to.as_deref()).await,
            Command::Restore(args) => tokio::task::spawn_blocking(move || admin::restore(&args)).await.map_err(|e| e.to_string())?,
            Command::Extensions { command: ExtensionsCommand::Install(args) } => {
                let dir = args.extension_dir.clone().unwrap_or_else(|| args.data_dir.join("extensions"));
                let names = if args.names.is_empty() { vec!["icu".to_string()] } else { args.names.clone() };
                tokio::task::spawn_blocking(move || {
                    pond_engine::extensions::install_from_pypi(&dir, &names, &args.python).map(|v| (dir, v))
                })
                .await
                .map_err(|e| e.to_string())?
                .map(|(dir, installed)| {
                    if installed.is_empty() {
                        println!("already installed in {}", dir.display());
                    } else {
                        println!("installed {} into {}", installed.join(", "), dir.display());
                    }
                })
                .map_err(|e| e.to_string())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: cli::ServeArgs) -> Result<(), String> {
    init_logging(&args.log.log_format, &args.log.log_level);
    let mut config = args.server_config()?;
    let jwks = match &args.auth.jwt_jwks {
        Some(source) => Some(admin::load_jwks(source).await?),
        None => None,
    };
    config.jwt = args.jwt_config(jwks)?;
    let server = pond::Server::builder_from(config).start().await.map_err(|e| e.to_string())?;
    wait_for_signal().await;
    tracing::info!("shutting down: draining requests and checkpointing databases");
    server.shutdown().await.map_err(|e| e.to_string())?;
    tracing::info!("stopped");
    Ok(())
}

/// `pond doctor`: the same settings as `pond serve`, checked instead of used.
async fn doctor(args: cli::ServeArgs) -> Result<(), String> {
    let config = args.server_config()?;
    let keys =
        pond::doctor::KeyFiles { jwt_secret_file: args.auth.jwt_secret_file.clone(), jwt_public_keys: args.auth.jwt_public_keys.clone() };
    let master_key = std::env::var(pond_secrets::MASTER_KEY_ENV).ok();
    let report =
        tokio::task::spawn_blocking(move || pond::doctor::run(&config, &keys, master_key.as_deref())).await.map_err(|e| e.to_string())?;
    print!("{}", report.render());
    if report.failed() {
        return Err("pond doctor found problems (the FAIL lines above say how to fix them)".into());
    }
    Ok(())
}

/// `pond health`: GET /health of a running server; success only on a 2xx answer.
async fn health(args: &cli::HealthArgs) -> Result<(), String> {
    let url = args.target();
    let parsed = reqwest::Url::parse(&url).map_err(|e| format!("--url '{url}': {e}"))?;
    let host = parsed.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    // The probe checks that the local process answers; it sends no credentials,
    // so an unverified certificate is acceptable towards loopback only.
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(args.timeout_ms))
        .danger_accept_invalid_certs(loopback && parsed.scheme() == "https")
        .build()
        .map_err(|e| e.to_string())?;
    let response = client.get(parsed).send().await.map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("{url}: {status}"));
    }
    println!("{url}: {status}");
    Ok(())
}

fn cert_generate(args: &cli::CertGenerateArgs) -> Result<(), String> {
    let options = pond::tls::DevCertOptions { hosts: args.hosts.clone(), days: args.days, client: args.client.clone(), force: args.force };
    let certs = pond::tls::generate_dev_certs(&args.out_dir, &options).map_err(|e| e.to_string())?;
    let hosts = if args.hosts.is_empty() { pond::tls::default_hosts() } else { args.hosts.clone() };
    println!("Development certificates (valid {} days) in {}:", args.days, args.out_dir.display());
    println!("  CA certificate      {}   (clients trust this: curl --cacert, ADBC tls_root_certs)", certs.ca_cert.display());
    println!("  CA key              {}", certs.ca_key.display());
    println!("  server certificate  {}   (for {})", certs.server_cert.display(), hosts.join(", "));
    println!("  server key          {}", certs.server_key.display());
    if let Some((cert, key)) = &certs.client {
        println!("  client certificate  {}   (common name {})", cert.display(), args.client.as_deref().unwrap_or_default());
        println!("  client key          {}", key.display());
    }
    let q = |p: &std::path::Path| shell_quote(&p.display().to_string());
    let mut line = format!("pond serve --tls-cert {} --tls-key {}", q(&certs.server_cert), q(&certs.server_key));
    if certs.client.is_some() {
        line.push_str(&format!(" --tls-client-ca {}", q(&certs.ca_cert)));
    }
    println!("\nStart the server with:\n  {line}");
    Ok(())
}

/// Quotes a path for a POSIX shell when it needs it.
fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+:,@".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn sql(args: cli::SqlArgs) -> Result<(), String> {
    if args.password.is_some() && std::env::var_os("POND_PASSWORD").is_none() {
        eprintln!("warning: --password is visible to other users of this machine; prefer POND_PASSWORD");
    }
    let mut shell = shell::Shell::connect(&args).await?;
    if let Some(c) = &args.command {
        return if shell.run_and_print(c).await { Ok(()) } else { Err("statement failed".into()) };
    }
    if let Some(f) = &args.file {
        let text = std::fs::read_to_string(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
        for stmt in pond_engine::sql::split_statements(&text) {
            if !shell.run_and_print(&stmt).await {
                return Err(format!("statement failed: {stmt}"));
            }
        }
        return Ok(());
    }
    shell.interactive().await
}
