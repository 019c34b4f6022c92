//! External catalogs and secrets, the parts that need no metastore (the
//! interop suite runs a real Hive Metastore: tests/interop/test_catalog_hive.py).

use crate::{column_strings, query, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn secrets_are_sealed_superuser_only_and_survive_a_restart() {
    let s = TestServer::start().await;
    let mut c = s.flight().await;
    let canary = format!("sk-canary-{}", std::process::id());
    query(&mut c, &format!("CREATE SECRET s3c (TYPE s3, KEY_ID 'AKIA1', SECRET '{canary}', REGION 'eu-west-1')")).await.unwrap();
    let listed = query(&mut c, "SHOW SECRETS").await.unwrap();
    assert_eq!(column_strings(&listed, 0), vec!["s3c"]);
    assert_eq!(column_strings(&listed, 1), vec!["s3"]);
    let meta = std::fs::read_to_string(s.dir.path().join("system/pond.json")).unwrap();
    assert!(meta.contains("s3c") && !meta.contains(&canary));
    use std::os::unix::fs::PermissionsExt;
    let key = s.dir.path().join("system/master.key");
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o077, 0);
    let e = query(&mut c, &format!("CREATE SECRET s3c (TYPE s3, KEY_ID 'x', SECRET '{canary}')")).await.unwrap_err().to_string();
    assert!(e.contains("s3c") && !e.contains(&canary), "{e}");
    let e = query(&mut c, "CREATE SECRET odd (TYPE s3, COLOUR 'red')").await.unwrap_err().to_string();
    assert!(e.contains("COLOUR"), "{e}");

    query(&mut c, "CREATE USER eve PASSWORD 'eve-password-1'").await.unwrap();
    let mut eve = s.flight_as("eve", "eve-password-1").await.unwrap();
    for sql in ["SHOW SECRETS", "CREATE SECRET mine (TYPE s3, KEY_ID 'a', SECRET 'b')", "DROP SECRET s3c"] {
        let e = query(&mut eve, sql).await.unwrap_err().to_string();
        assert!(e.contains("permission denied"), "{sql}: {e}");
    }

    let dir = s.stop().await;
    let server = TestServer::launch(dir.path().to_path_buf(), |b| b).await;
    let s = TestServer { server: Some(server), dir };
    let mut c = s.flight().await;
    assert_eq!(column_strings(&query(&mut c, "SHOW SECRETS").await.unwrap(), 0), vec!["s3c"]);
    query(&mut c, "DROP SECRET s3c").await.unwrap();
    query(&mut c, "DROP SECRET IF EXISTS s3c").await.unwrap();
    let e = query(&mut c, "DROP SECRET s3c").await.unwrap_err().to_string();
    assert!(e.contains("s3c"), "{e}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attach_errors_are_clear_and_quick() {
    let s = TestServer::start().await;
    let mut c = s.flight().await;
    // Nothing listens on port 1: refused at once, retried, reported with the URI.
    let started = std::time::Instant::now();
    let e = query(&mut c, "ATTACH 'thrift://127.0.0.1:1' AS nowhere (TYPE hive, TIMEOUT 2)").await.unwrap_err().to_string();
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
    assert!(e.contains("nowhere") && e.contains("127.0.0.1:1"), "{e}");
    let e = query(&mut c, "ATTACH 'hms:9083' AS h (TYPE hive)").await.unwrap_err().to_string();
    assert!(e.contains("thrift://"), "{e}");
    let e = query(&mut c, "ATTACH 'thrift://h:9083' AS h (TYPE metastore, PROVIDER glue)").await.unwrap_err().to_string();
    assert!(e.contains("glue"), "{e}");
    let e = query(&mut c, "ATTACH 'thrift://h:9083' AS \"default\" (TYPE hive)").await.unwrap_err().to_string();
    assert!(e.contains("already exists"), "{e}");
    // Nothing was attached or recorded.
    assert_eq!(column_strings(&query(&mut c, "SHOW DATABASES").await.unwrap(), 0), vec!["default"]);
    let e = query(&mut c, "REFRESH CATALOG nowhere").await.unwrap_err().to_string();
    assert!(e.contains("nowhere"), "{e}");
    let e = query(&mut c, "DETACH \"default\"").await.unwrap_err().to_string();
    assert!(e.contains("DROP DATABASE"), "{e}");
    query(&mut c, "CREATE USER mal PASSWORD 'mal-password-1'").await.unwrap();
    let mut mal = s.flight_as("mal", "mal-password-1").await.unwrap();
    let e = query(&mut mal, "ATTACH 'thrift://127.0.0.1:1' AS x (TYPE hive)").await.unwrap_err().to_string();
    assert!(e.contains("permission denied"), "{e}");
    let e = query(&mut mal, "SELECT * FROM metastore_scan('x', 'a', 'b')").await.unwrap_err().to_string();
    assert!(e.contains("metastore_scan"), "{e}");
    s.stop().await;
}
