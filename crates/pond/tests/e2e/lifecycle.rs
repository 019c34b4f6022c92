use crate::{column_strings, query, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn generated_admin_password_is_written_once_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let server = pond::Server::builder()
        .data_dir(dir.path())
        .flight_addr("127.0.0.1:0".parse().unwrap())
        .http_addr("127.0.0.1:0".parse().unwrap())
        .pg_addr(Some("127.0.0.1:0".parse().unwrap()))
        .extension_dir(crate::extension_dir())
        .engine_config(|e| e.install_from_repository = false)
        .start()
        .await
        .unwrap();
    let file = dir.path().join("admin-password");
    let password = std::fs::read_to_string(&file).unwrap().trim().to_string();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let s = TestServer { server: Some(server), dir };
    let mut c = s.flight_as("admin", &password).await.unwrap();
    assert_eq!(column_strings(&query(&mut c, "SELECT 1").await.unwrap(), 0), vec!["1"]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn missing_extension_names_the_install_command() {
    let dir = tempfile::tempdir().unwrap();
    let empty_ext = tempfile::tempdir().unwrap();
    let err = pond::Server::builder()
        .data_dir(dir.path())
        .flight_addr("127.0.0.1:0".parse().unwrap())
        .http_addr("127.0.0.1:0".parse().unwrap())
        .pg_addr(None)
        .extension_dir(empty_ext.path())
        .admin_password("x")
        .engine_config(|e| e.install_from_repository = false)
        .start()
        .await
        .err()
        .expect("start fails without icu");
    let msg = err.to_string();
    assert!(
        msg.contains("'icu'") && msg.contains("pond extensions install") && msg.contains(&empty_ext.path().display().to_string()),
        "{msg}"
    );
}
