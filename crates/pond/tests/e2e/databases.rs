use crate::{column_strings, query, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn create_rename_drop_and_cross_database_join() {
    let s = TestServer::start().await;
    let mut c = s.flight().await;
    assert_eq!(column_strings(&query(&mut c, "SHOW DATABASES").await.unwrap(), 0), vec!["default"]);
    query(&mut c, "CREATE DATABASE a; CREATE DATABASE b").await.unwrap();
    query(&mut c, "CREATE TABLE a.main.t AS SELECT 1 AS k, 'left' AS l").await.unwrap();
    query(&mut c, "CREATE TABLE b.main.u AS SELECT 1 AS k, 'right' AS r").await.unwrap();
    let j = query(&mut c, "SELECT l, r FROM a.main.t JOIN b.main.u USING (k)").await.unwrap();
    assert_eq!(column_strings(&j, 0), vec!["left"]);
    assert_eq!(column_strings(&j, 1), vec!["right"]);

    query(&mut c, "ALTER DATABASE a RENAME TO a2").await.unwrap();
    assert_eq!(column_strings(&query(&mut c, "SELECT l FROM a2.main.t").await.unwrap(), 0), vec!["left"]);
    assert!(query(&mut c, "SELECT * FROM a.main.t").await.is_err());
    query(&mut c, "DROP DATABASE b").await.unwrap();
    assert_eq!(column_strings(&query(&mut c, "SHOW DATABASES").await.unwrap(), 0), vec!["a2", "default"]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_names_duplicates_and_missing_databases_get_clear_errors() {
    let s = TestServer::start().await;
    let mut c = s.flight().await;
    let e = query(&mut c, "CREATE DATABASE \"bad-name\"").await.unwrap_err().to_string();
    assert!(e.contains("invalid database name 'bad-name'") && e.contains("'-'"), "{e}");
    let e = query(&mut c, "CREATE DATABASE memory").await.unwrap_err().to_string();
    assert!(e.contains("reserved"), "{e}");
    query(&mut c, "CREATE DATABASE dup").await.unwrap();
    let e = query(&mut c, "CREATE DATABASE DUP").await.unwrap_err().to_string();
    assert!(e.contains("database 'dup' already exists"), "{e}");
    query(&mut c, "CREATE DATABASE IF NOT EXISTS dup").await.unwrap();
    let e = query(&mut c, "DROP DATABASE ghost").await.unwrap_err().to_string();
    assert!(e.contains("database 'ghost' does not exist"), "{e}");
    query(&mut c, "DROP DATABASE IF EXISTS ghost").await.unwrap();
    let e = query(&mut c, "DROP DATABASE \"default\"").await.unwrap_err().to_string();
    assert!(e.contains("cannot be dropped"), "{e}");
    let e = query(&mut c, "ALTER DATABASE dup RENAME TO \"default\"").await.unwrap_err().to_string();
    assert!(e.contains("already exists"), "{e}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn databases_and_data_survive_restart() {
    let s = TestServer::start().await;
    let mut c = s.flight().await;
    query(&mut c, "CREATE DATABASE kept").await.unwrap();
    query(&mut c, "CREATE TABLE kept.main.t AS SELECT range AS i FROM range(1000)").await.unwrap();
    query(&mut c, "CREATE DATABASE renamed_from").await.unwrap();
    query(&mut c, "CREATE TABLE renamed_from.main.x AS SELECT 5 AS v").await.unwrap();
    query(&mut c, "ALTER DATABASE renamed_from RENAME TO renamed_to").await.unwrap();
    drop(c);
    let dir = s.stop().await;
    let server = TestServer::launch(dir.path().to_path_buf(), |b| b).await;
    let s2 = TestServer { server: Some(server), dir };
    let mut c = s2.flight().await;
    assert_eq!(column_strings(&query(&mut c, "SHOW DATABASES").await.unwrap(), 0), vec!["default", "kept", "renamed_to"]);
    assert_eq!(column_strings(&query(&mut c, "SELECT sum(i) FROM kept.main.t").await.unwrap(), 0), vec!["499500"]);
    assert_eq!(column_strings(&query(&mut c, "SELECT v FROM renamed_to.main.x").await.unwrap(), 0), vec!["5"]);
    s2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orphan_files_from_an_interrupted_create_are_removed_at_start() {
    let s = TestServer::start().await;
    let dir = s.stop().await;
    // A crash between creating a database file and writing the metadata leaves a file no database refers to.
    let orphan = dir.path().join("databases").join("0123456789abcdef0123456789abcdef.duckdb");
    std::fs::write(&orphan, b"not a database").unwrap();
    let server = TestServer::launch(dir.path().to_path_buf(), |b| b).await;
    assert!(!orphan.exists());
    let s2 = TestServer { server: Some(server), dir };
    let mut c = s2.flight().await;
    assert_eq!(column_strings(&query(&mut c, "SHOW DATABASES").await.unwrap(), 0), vec!["default"]);
    s2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn icu_is_loaded_for_time_zone_arithmetic() {
    let s = TestServer::start().await;
    let mut c = s.flight().await;
    let r = query(&mut c, "SELECT (TIMESTAMPTZ '2024-03-10 12:00:00+00' - INTERVAL 1 HOUR) AT TIME ZONE 'America/New_York'").await.unwrap();
    assert_eq!(column_strings(&r, 0), vec!["2024-03-10T07:00:00"]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_whose_database_is_dropped_elsewhere_is_told_and_recovers() {
    let s = TestServer::start().await;
    let mut a = s.flight().await;
    let mut b = s.flight().await;
    query(&mut a, "CREATE DATABASE doomed").await.unwrap();
    query(&mut a, "USE doomed").await.unwrap();
    query(&mut b, "DROP DATABASE doomed").await.unwrap();
    let e = query(&mut a, "CREATE TABLE t(x INTEGER)").await.unwrap_err().to_string();
    assert!(e.contains("database 'doomed' no longer exists") && e.contains("now uses 'default'"), "{e}");
    // The statement did not run anywhere else; the session works again, in default.
    assert_eq!(column_strings(&query(&mut a, "SELECT current_database()").await.unwrap(), 0), vec!["default"]);
    assert_eq!(column_strings(&query(&mut a, "SELECT count(*) FROM duckdb_tables() WHERE table_name = 't'").await.unwrap(), 0), vec!["0"]);
    s.stop().await;
}
