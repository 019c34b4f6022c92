//! Embeds the console's files: the hand-written pages (`web/app`, in the
//! repository) and the third-party bundles (`web/dist`, made from the npm
//! lockfile by scripts/console_assets.sh; `POND_CONSOLE_DIST` points elsewhere).
//! Without the bundles the binary still builds; its console then says how to get them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn mime(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

fn files(dir: &Path, prefix: &str, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let name = e.file_name().to_string_lossy().to_string();
        if path.is_file() && !name.ends_with(".map") {
            out.push((format!("{prefix}{name}"), path));
        }
    }
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let app = root.join("web/app");
    let dist = std::env::var_os("POND_CONSOLE_DIST").map(PathBuf::from).unwrap_or_else(|| root.join("web/dist"));
    println!("cargo:rerun-if-env-changed=POND_CONSOLE_DIST");
    println!("cargo:rerun-if-changed={}", app.display());
    if dist.is_dir() {
        println!("cargo:rerun-if-changed={}", dist.display());
    } else {
        // The directory appearing changes its parent.
        println!("cargo:rerun-if-changed={}", dist.parent().unwrap_or(&root).display());
        println!(
            "cargo:warning=the web console's libraries are not built ({} is missing): run scripts/console_assets.sh (scripts/setup.sh does)",
            dist.display()
        );
    }
    let mut list = Vec::new();
    files(&app, "", &mut list);
    files(&dist, "vendor/", &mut list);
    let mut code = String::from("/// (path under /console/assets/, content type, bytes)\npub static ASSETS: &[(&str, &str, &[u8])] = &[\n");
    for (name, path) in &list {
        let _ = writeln!(code, "    ({name:?}, {:?}, include_bytes!({:?})),", mime(name), path.display().to_string());
    }
    code.push_str("];\n");
    let _ = writeln!(code, "/// Whether the third-party bundles were embedded.\npub const VENDOR_BUILT: bool = {};", dist.is_dir());
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("assets.rs");
    std::fs::write(out, code).expect("write assets.rs");
}
