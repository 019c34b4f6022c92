//! `pond user|grant|revoke|grants|token`: administration from the command line
//! through a running server's HTTP API (the same endpoints and statements every
//! client uses). Passwords come from the environment or a prompt, never from flags.

use serde_json::{json, Value};

use crate::cli::{AdminConn, GrantArgs, RestoreArgs, TokenCommand, UserCommand};

struct Client {
    http: reqwest::Client,
    base: String,
    user: String,
    password: String,
}

fn password_from(env: &str, prompt: &str) -> Result<String, String> {
    match std::env::var(env) {
        Ok(p) if !p.is_empty() => Ok(p),
        _ => rpassword::prompt_password(prompt).map_err(|e| format!("cannot read the password ({env} is not set): {e}")),
    }
}

impl Client {
    fn new(conn: &AdminConn) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder();
        if let Some(ca) = &conn.cacert {
            let pem = std::fs::read(ca).map_err(|e| format!("cannot read --cacert {}: {e}", ca.display()))?;
            let cert =
                reqwest::Certificate::from_pem(&pem).map_err(|e| format!("--cacert {} is not a PEM certificate: {e}", ca.display()))?;
            builder = builder.add_root_certificate(cert);
        }
        let password = password_from("POND_PASSWORD", &format!("password for {}: ", conn.user))?;
        Ok(Self {
            http: builder.build().map_err(|e| e.to_string())?,
            base: conn.url.trim_end_matches('/').to_string(),
            user: conn.user.clone(),
            password,
        })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).basic_auth(&self.user, Some(&self.password));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| format!("cannot reach {}: {e}", self.base))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        let value: Value = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        if status.is_success() {
            Ok(value)
        } else {
            Err(format!("{status}: {}", value.get("error").and_then(Value::as_str).unwrap_or(&value.to_string())))
        }
    }
}

fn print_rows(rows: &Value) {
    let Some(rows) = rows.as_array() else { return };
    for r in rows {
        println!("{}", serde_json::to_string(r).unwrap_or_default());
    }
}

pub async fn user(conn: &AdminConn, command: &UserCommand) -> Result<(), String> {
    use reqwest::Method;
    let c = Client::new(conn)?;
    match command {
        UserCommand::List => print_rows(&c.call(Method::GET, "/api/v1/users", None).await?["users"]),
        UserCommand::Create { name, superuser } => {
            let pw = password_from("POND_NEW_PASSWORD", &format!("new password for {name}: "))?;
            c.call(Method::POST, "/api/v1/users", Some(json!({"name": name, "password": pw, "superuser": superuser}))).await?;
            println!("created user {name}");
        }
        UserCommand::Password { name } => {
            let pw = password_from("POND_NEW_PASSWORD", &format!("new password for {name}: "))?;
            c.call(Method::PATCH, &format!("/api/v1/users/{name}"), Some(json!({"password": pw}))).await?;
            println!("password of {name} changed");
        }
        UserCommand::Rename { name, new_name } => {
            c.call(Method::PATCH, &format!("/api/v1/users/{name}"), Some(json!({"name": new_name}))).await?;
            println!("renamed {name} to {new_name}");
        }
        UserCommand::Superuser { name, off } => {
            c.call(Method::PATCH, &format!("/api/v1/users/{name}"), Some(json!({"superuser": !off}))).await?;
            println!("{name} is {}a superuser", if *off { "no longer " } else { "" });
        }
        UserCommand::Drop { name } => {
            c.call(Method::DELETE, &format!("/api/v1/users/{name}"), None).await?;
            println!("dropped user {name}");
        }
    }
    Ok(())
}

pub async fn grant(args: &GrantArgs, revoke: bool) -> Result<(), String> {
    let c = Client::new(&args.conn)?;
    let method = if revoke { reqwest::Method::DELETE } else { reqwest::Method::POST };
    let body = json!({"user": args.to, "database": args.database, "table": args.table, "privileges": args.privileges});
    c.call(method, "/api/v1/grants", Some(body)).await?;
    let on = match &args.table {
        Some(t) => format!("table {}.{t}", args.database),
        None => format!("database {}", args.database),
    };
    println!(
        "{} {} on {on} {} {}",
        if revoke { "revoked" } else { "granted" },
        args.privileges.join(", "),
        if revoke { "from" } else { "to" },
        args.to
    );
    Ok(())
}

pub async fn grants(conn: &AdminConn, user: Option<&str>) -> Result<(), String> {
    let c = Client::new(conn)?;
    let path = match user {
        Some(u) => format!("/api/v1/grants?user={u}"),
        None => "/api/v1/grants".into(),
    };
    print_rows(&c.call(reqwest::Method::GET, &path, None).await?["grants"]);
    Ok(())
}

pub async fn token(conn: &AdminConn, command: &TokenCommand) -> Result<(), String> {
    use reqwest::Method;
    let c = Client::new(conn)?;
    match command {
        TokenCommand::List => print_rows(&c.call(Method::GET, "/api/v1/auth/tokens", None).await?["tokens"]),
        TokenCommand::Create { name, description, owner, databases, permission, expires_in } => {
            let body = json!({"name": name, "description": description, "user": owner, "databases": databases,
                              "permission": permission, "expires_in": expires_in});
            let t = c.call(Method::POST, "/api/v1/auth/tokens", Some(body)).await?;
            eprintln!("token {} created; its secret is shown once:", t["id"].as_str().unwrap_or("?"));
            println!("{}", t["token"].as_str().unwrap_or(""));
        }
        TokenCommand::Rotate { id } => {
            let t = c.call(Method::POST, &format!("/api/v1/auth/tokens/{id}/rotate"), None).await?;
            eprintln!("token {id} rotated; the old secret no longer works; the new one is shown once:");
            println!("{}", t["token"].as_str().unwrap_or(""));
        }
        TokenCommand::Revoke { id } => {
            c.call(Method::POST, &format!("/api/v1/auth/tokens/{id}/revoke"), None).await?;
            println!("token {id} revoked");
        }
        TokenCommand::Delete { id } => {
            c.call(Method::DELETE, &format!("/api/v1/auth/tokens/{id}"), None).await?;
            println!("token {id} deleted");
        }
    }
    Ok(())
}

/// A JWKS from a file, or fetched from an http(s) URL.
pub async fn load_jwks(source: &str) -> Result<String, String> {
    if source.starts_with("http://") || source.starts_with("https://") {
        let resp = reqwest::get(source).await.map_err(|e| format!("cannot fetch --jwt-jwks {source}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("cannot fetch --jwt-jwks {source}: HTTP {}", resp.status()));
        }
        resp.text().await.map_err(|e| format!("cannot read --jwt-jwks {source}: {e}"))
    } else {
        std::fs::read_to_string(source).map_err(|e| format!("cannot read --jwt-jwks {source}: {e}"))
    }
}

/// `pond backup`: asks the server for an online backup.
pub async fn backup(conn: &AdminConn, to: Option<&str>) -> Result<(), String> {
    let c = Client::new(conn)?;
    let body = match to {
        Some(t) => json!({ "to": t }),
        None => json!({}),
    };
    let v = c.call(reqwest::Method::POST, "/api/v1/backup", Some(body)).await?;
    println!(
        "backup {} in {}: {} files, {} bytes copied, {} bytes already there, {:.1} s (flushes held {:.2} s)",
        v["id"].as_str().unwrap_or("?"),
        v["target"].as_str().unwrap_or("?"),
        v["files"],
        v["bytes_copied"],
        v["bytes_reused"],
        v["seconds"].as_f64().unwrap_or(0.0),
        v["lake_pause_seconds"].as_f64().unwrap_or(0.0)
    );
    Ok(())
}

/// `pond restore`: lists, checks or restores a backup (no server involved).
pub fn restore(args: &RestoreArgs) -> Result<(), String> {
    let store = pond_backup::Store::open(&args.from).map_err(|e| e.to_string())?;
    if args.list {
        for id in store.list().map_err(|e| e.to_string())? {
            match store.read_manifest(&id) {
                Ok(m) => println!(
                    "{id}  finished {}  {} files  {} bytes  databases: {}",
                    m.finished_at,
                    m.files.len(),
                    m.total_bytes(),
                    m.databases.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
                ),
                Err(e) => println!("{id}  unreadable: {e}"),
            }
        }
        return Ok(());
    }
    let m = pond_backup::restore::pick(&store, args.backup.as_deref()).map_err(|e| e.to_string())?;
    if args.check {
        pond_backup::restore::verify(&store, &m).map_err(|e| e.to_string())?;
        println!("backup {} is intact: {} files, {} bytes checked", m.id, m.files.len(), m.total_bytes());
        return Ok(());
    }
    let Some(data_dir) = &args.data_dir else { return Err("--data-dir is required to restore".into()) };
    let key = match (&args.master_key_file, std::env::var(pond_secrets::MASTER_KEY_ENV).ok().filter(|v| !v.is_empty())) {
        (Some(f), _) => pond_backup::KeySource::File(f.clone()),
        (None, Some(text)) => pond_backup::KeySource::Environment(text),
        (None, None) => pond_backup::KeySource::None,
    };
    let until = match &args.until {
        Some(t) => {
            let at_ns = pond_backup::rewind::parse_until(t).map_err(|e| e.to_string())?;
            let extension_dir = args
                .extension_dir
                .clone()
                .ok_or("--until needs --extension-dir (the directory holding the ducklake extension, as for pond serve)")?;
            Some(pond_backup::restore::Until { at_ns, extension_dir })
        }
        None => None,
    };
    let lake = match args.s3.data_path(args.lake_data_path.as_deref())? {
        Some(url) => Some(pond_backup::restore::LakeTarget { url, s3: args.s3.config()? }),
        None => None,
    };
    let r = pond_backup::restore::restore_until(&store, &m, data_dir, &key, until.as_ref(), lake.as_ref()).map_err(|e| e.to_string())?;
    if let Some(w) = &r.rewound {
        println!(
            "lake set back to snapshot {} ({}) over {} tables; ingest log: {} records kept, {} later ones dropped",
            w.snapshot_id, w.snapshot_time, w.tables, w.log_records_kept, w.log_records_dropped
        );
    }
    if let Some(t) = &lake {
        println!("lake files on {}: {} sent, {} already there", t.url, r.lake_files_sent, r.lake_files_present);
    }
    let lake_flag = lake.as_ref().map(|t| format!(" --lake-data-path {} (and the same --lake-s3-* settings)", t.url)).unwrap_or_default();
    println!(
        "restored backup {} into {}: {} files, {} bytes; start it with: pond serve --data-dir {}{lake_flag}",
        r.id,
        r.data_dir.display(),
        r.files,
        r.bytes,
        r.data_dir.display()
    );
    for n in &m.notes {
        println!("note: {n}");
    }
    Ok(())
}
