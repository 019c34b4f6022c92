//! Online backup and restore: a backup taken while inserts and line-protocol
//! writes go on restores to a server that answers as the original did at the
//! backup point (each database and the lake a consistent prefix of the
//! writes, users, grants and secrets intact); later backups copy only new
//! lake files; damaged or partial backups are refused; only superusers back
//! up; scheduled backups keep the configured number.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::{column_strings, query, rows, TestServer, ADMIN_PASSWORD};

/// Every row of a result, its columns joined by `|`.
async fn sql(s: &TestServer, text: &str) -> Vec<String> {
    let mut c = s.flight().await;
    let b = query(&mut c, text).await.unwrap_or_else(|e| panic!("{text}: {e}"));
    let cols: Vec<Vec<String>> = (0..b.first().map(|b| b.num_columns()).unwrap_or(0)).map(|i| column_strings(&b, i)).collect();
    (0..rows(&b)).map(|r| cols.iter().map(|c| c[r].as_str()).collect::<Vec<_>>().join("|")).collect()
}

async fn one(s: &TestServer, text: &str) -> String {
    let mut c = s.flight().await;
    let b = query(&mut c, text).await.unwrap_or_else(|e| panic!("{text}: {e}"));
    column_strings(&b, 0).join(",")
}

async fn write_lines(s: &TestServer, db: &str, body: String) {
    let r = reqwest::Client::new()
        .post(s.http_url(&format!("/write?db={db}")))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

/// A consistent prefix: ids 1..=n with no gap, n between the bounds.
fn assert_prefix(ids: &str, at_least: u64, at_most: u64, what: &str) -> u64 {
    let got: Vec<u64> = if ids.is_empty() { vec![] } else { ids.split(',').map(|x| x.parse().unwrap()).collect() };
    let n = got.len() as u64;
    assert_eq!(got, (1..=n).collect::<Vec<_>>(), "{what}: not a gap-free prefix of the writes");
    assert!(n >= at_least && n <= at_most, "{what}: {n} rows, expected between {at_least} and {at_most}");
    n
}

fn backup_row(b: &[arrow::record_batch::RecordBatch]) -> (String, u64, u64, u64) {
    let id = column_strings(b, 0)[0].clone();
    let n = |i| column_strings(b, i)[0].parse::<u64>().unwrap();
    (id, n(2), n(3), n(4))
}

#[tokio::test]
async fn backup_during_writes_restores_to_a_consistent_point() {
    let s = TestServer::start_with(|b| b.lake(20, Duration::from_secs(3600), None, Duration::ZERO)).await;
    let target = tempfile::tempdir().unwrap();
    let mut c = s.flight().await;
    for st in [
        "CREATE DATABASE shop",
        "USE shop",
        "CREATE SEQUENCE seq START 100",
        "CREATE TABLE items(id INTEGER PRIMARY KEY DEFAULT nextval('seq'), name VARCHAR, price DECIMAL(10,2))",
        "INSERT INTO items(name, price) SELECT 'item' || i, i * 1.25 FROM range(500) t(i)",
        "CREATE VIEW cheap AS SELECT * FROM items WHERE price < 10",
        "CREATE MACRO twice(x) AS x * 2",
        "CREATE TABLE orders(id BIGINT PRIMARY KEY)",
        "CREATE USER bob PASSWORD 'bob-pw-1234'",
        "GRANT READ ON DATABASE shop TO bob",
        "CREATE SECRET s3c (TYPE s3, KEY_ID 'AKIA1', SECRET 'restore-me-secret', REGION 'eu-west-1')",
    ] {
        query(&mut c, st).await.unwrap_or_else(|e| panic!("{st}: {e}"));
    }
    // Lake rows before the backup: some flushed (20-row threshold), some hot.
    let mut lines = String::new();
    for i in 1..=50u64 {
        lines.push_str(&format!("cpu,host=h{} n={i}i {}\n", i % 3, 1_700_000_000_000_000_000u64 + i));
    }
    write_lines(&s, "tsdb", lines).await;

    // Writers that go on during the backup: single-row inserts, and line-protocol writes.
    let stop = Arc::new(AtomicBool::new(false));
    let acked_orders = Arc::new(AtomicU64::new(0));
    let acked_lines = Arc::new(AtomicU64::new(50));
    let mut c = s.flight().await;
    let (stop1, acked1) = (stop.clone(), acked_orders.clone());
    let inserter = tokio::spawn(async move {
        let mut i = 0u64;
        while !stop1.load(Ordering::SeqCst) {
            i += 1;
            query(&mut c, &format!("INSERT INTO shop.main.orders VALUES ({i})")).await.unwrap();
            acked1.store(i, Ordering::SeqCst);
        }
        i
    });
    let url = s.http_url("/write?db=tsdb");
    let (stop2, acked2) = (stop.clone(), acked_lines.clone());
    let ingester = tokio::spawn(async move {
        let http = reqwest::Client::new();
        let mut n = 50u64;
        while !stop2.load(Ordering::SeqCst) {
            let body: String =
                (n + 1..=n + 7).map(|i| format!("cpu,host=h{} n={i}i {}\n", i % 3, 1_700_000_000_000_000_000u64 + i)).collect();
            let r = http.post(&url).basic_auth("admin", Some(ADMIN_PASSWORD)).body(body).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::NO_CONTENT);
            n += 7;
            acked2.store(n, Ordering::SeqCst);
        }
        n
    });
    // Let both get going, then back up while they run.
    while acked_orders.load(Ordering::SeqCst) < 20 || acked_lines.load(Ordering::SeqCst) < 120 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let orders_before = acked_orders.load(Ordering::SeqCst);
    let lines_before = acked_lines.load(Ordering::SeqCst);
    let mut admin = s.flight().await;
    let b = query(&mut admin, &format!("BACKUP TO '{}'", target.path().display())).await.unwrap();
    let (id, files, copied, reused) = backup_row(&b);
    let orders_after = acked_orders.load(Ordering::SeqCst) + 1;
    let lines_after = acked_lines.load(Ordering::SeqCst) + 7;
    stop.store(true, Ordering::SeqCst);
    let orders_total = inserter.await.unwrap();
    let lines_total = ingester.await.unwrap();
    assert!(files >= 5 && copied > 0 && reused == 0, "first backup: {files} files, {copied} copied, {reused} reused");
    assert!(orders_total > orders_before, "inserts went on during the backup");
    let items = sql(&s, "SELECT id, name, price FROM shop.main.items ORDER BY id").await;
    let cheap = one(&s, "SELECT count(*) FROM shop.main.cheap").await;

    // Restore into a new directory, with the original's master key.
    let original = s.dir.path().to_path_buf();
    let key = original.join("system/master.key");
    let restored_dir = tempfile::tempdir().unwrap();
    let new_dir = restored_dir.path().join("pond-data");
    let store = pond_backup::Store::open(target.path().to_str().unwrap()).unwrap();
    let m = pond_backup::restore::pick(&store, None).unwrap();
    assert_eq!(m.id, id);
    // Without the key the backup's secret could not be opened: refused, naming the flag.
    let e = pond_backup::restore::restore(&store, &m, &new_dir, &pond_backup::KeySource::None).unwrap_err().to_string();
    assert!(e.contains("--master-key-file") && !new_dir.exists(), "{e}");
    pond_backup::restore::restore(&store, &m, &new_dir, &pond_backup::KeySource::File(key)).unwrap();
    let _original = s.stop().await;

    let r = TestServer { server: Some(TestServer::launch(new_dir.clone(), |b| b).await), dir: restored_dir };
    // Data not written during the backup: identical, row by row.
    assert_eq!(sql(&r, "SELECT id, name, price FROM shop.main.items ORDER BY id").await, items);
    assert_eq!(one(&r, "SELECT count(*) FROM shop.main.cheap").await, cheap);
    assert_eq!(one(&r, "SELECT shop.main.twice(21)").await, "42");
    assert_eq!(one(&r, "SELECT nextval('shop.main.seq')").await, "600", "the sequence continues where it was");
    // Data written during the backup: a gap-free prefix, with every write acknowledged before the backup began.
    let orders = one(&r, "SELECT id FROM shop.main.orders ORDER BY id").await;
    let n_orders = assert_prefix(&orders, orders_before, orders_after, "orders");
    let cpu = one(&r, "SELECT n FROM tsdb.cpu ORDER BY n").await;
    let n_cpu = assert_prefix(&cpu, lines_before, lines_after, "cpu measurement");
    assert!(n_orders < orders_total && n_cpu < lines_total, "writes after the backup point are not in it");
    // Users, grants and secrets came back.
    let mut bob = r.flight_as("bob", "bob-pw-1234").await.expect("bob logs in to the restored server");
    assert_eq!(rows(&query(&mut bob, "SELECT * FROM shop.main.items").await.unwrap()), 500);
    assert!(query(&mut bob, "INSERT INTO shop.main.orders VALUES (-1)").await.is_err(), "bob still only reads");
    assert_eq!(one(&r, "SHOW SECRETS").await, "s3c");
    // The restored server keeps working: new writes, flushes.
    write_lines(&r, "tsdb", "cpu,host=z n=0i 1700000000000000000\n".into()).await;
    assert_eq!(one(&r, "SELECT count(*) FROM tsdb.cpu").await, (n_cpu + 1).to_string());
    r.stop().await;
}

#[tokio::test]
async fn later_backups_copy_only_new_lake_files_and_damage_is_refused() {
    let s = TestServer::start_with(|b| b.lake(10, Duration::from_secs(3600), None, Duration::ZERO)).await;
    let target = tempfile::tempdir().unwrap();
    let lines = |from: u64, to: u64| -> String { (from..=to).map(|i| format!("mem,host=a used={i}i {}\n", i * 1_000_000_000)).collect() };
    write_lines(&s, "tsdb", lines(1, 200)).await;
    let flushed = reqwest::Client::new()
        .post(s.http_url("/api/v1/lake/flush?db=tsdb"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap();
    assert!(flushed.status().is_success());
    let mut c = s.flight().await;
    let to = format!("BACKUP TO '{}'", target.path().display());
    let (_, _, copied1, reused1) = backup_row(&query(&mut c, &to).await.unwrap());
    assert_eq!(reused1, 0);
    // Nothing new in the lake: its files are not copied again (databases are copied whole each time).
    let (id2, _, _, reused2) = backup_row(&query(&mut c, &to).await.unwrap());
    let store = pond_backup::Store::open(target.path().to_str().unwrap()).unwrap();
    let m2 = store.read_manifest(&id2).unwrap();
    let lake_bytes: u64 = m2.files.iter().filter(|f| f.kind == pond_backup::Kind::LakeData).map(|f| f.size).sum();
    assert!(lake_bytes > 0 && reused2 >= lake_bytes, "lake files reused: {reused2} of {lake_bytes}");
    assert!(copied1 > 0);
    // The same bytes (e.g. the metadata document) are stored once.
    let objects = walk_count(&target.path().join("objects"));
    let distinct: std::collections::HashSet<_> =
        store.list().unwrap().iter().flat_map(|id| store.read_manifest(id).unwrap().files.into_iter().map(|f| f.sha256)).collect();
    assert_eq!(objects, distinct.len());

    // One byte of one lake file changed: refused, naming the file; nothing written.
    let victim = m2.files.iter().find(|f| f.kind == pond_backup::Kind::LakeData).unwrap().clone();
    let obj = target.path().join("objects").join(&victim.sha256[..2]).join(&victim.sha256);
    let mut bytes = std::fs::read(&obj).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&obj, &bytes).unwrap();
    let dest = tempfile::tempdir().unwrap();
    let new_dir = dest.path().join("restored");
    let e = pond_backup::restore::restore(&store, &m2, &new_dir, &pond_backup::KeySource::None).unwrap_err().to_string();
    assert!(e.contains("damaged") && e.contains(&victim.path), "{e}");
    assert!(!new_dir.exists());
    // A missing object: refused too.
    std::fs::remove_file(&obj).unwrap();
    let e = pond_backup::restore::verify(&store, &m2).unwrap_err().to_string();
    assert!(e.contains("missing"), "{e}");
    // A backup whose manifest never got written (interrupted) is not a backup.
    let empty = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(empty.path().join("objects/ab")).unwrap();
    let partial = pond_backup::Store::open(empty.path().to_str().unwrap()).unwrap();
    assert!(pond_backup::restore::pick(&partial, None).unwrap_err().to_string().contains("holds no backup"));
    // An existing, non-empty directory is never overwritten.
    let e = pond_backup::restore::restore(&store, &m2, s.dir.path(), &pond_backup::KeySource::None).unwrap_err().to_string();
    assert!(e.contains("not empty"), "{e}");
    s.stop().await;
}

fn walk_count(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).unwrap().flatten().map(|d| std::fs::read_dir(d.path()).unwrap().count()).sum()
}

#[tokio::test]
async fn only_superusers_back_up_and_the_schedule_keeps_the_newest() {
    let target = tempfile::tempdir().unwrap();
    let schedule =
        pond_backup::Schedule { target: Some(target.path().display().to_string()), every: Some(Duration::from_secs(1)), keep: 2 };
    let s = TestServer::start_with(|b| b.backup(schedule)).await;
    let mut c = s.flight().await;
    query(&mut c, "CREATE USER carol PASSWORD 'carol-pw-123'").await.unwrap();
    let mut carol = s.flight_as("carol", "carol-pw-123").await.unwrap();
    let e = query(&mut carol, "BACKUP").await.unwrap_err().to_string();
    assert!(e.contains("requires a superuser"), "{e}");
    let http = reqwest::Client::new();
    let r = http.post(s.http_url("/api/v1/backup")).basic_auth("carol", Some("carol-pw-123")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // A superuser over HTTP, to the default target.
    let r = http.post(s.http_url("/api/v1/backup")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().await.unwrap();
    assert!(r.status().is_success() || r.status() == StatusCode::CONFLICT, "{}", r.status());
    // Bad targets say what is wrong.
    let e = query(&mut c, "BACKUP TO 'ftp://host/x'").await.unwrap_err().to_string();
    assert!(e.contains("use a directory or s3://bucket/prefix"), "{e}");
    // The schedule runs every second and keeps two.
    let store = pond_backup::Store::open(target.path().to_str().unwrap()).unwrap();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..150 {
        let ids = store.list().unwrap();
        assert!(ids.len() <= 3, "pruned to 2 after each run (one may be mid-run): {ids:?}");
        seen.extend(ids);
        if seen.len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen.len() >= 4, "scheduled backups ran: {seen:?}");
    let status: Value =
        http.get(s.http_url("/api/v1/backup")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["schedule"]["keep"], 2);
    assert!(status["last"]["ok"].as_bool().unwrap(), "{status}");
    assert!(status["backups"].as_array().unwrap().len() <= 3);
    let metrics = http.get(s.http_url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("pond_backups_total{result=\"ok\"}"), "{metrics}");
    assert!(metrics.contains("pond_backup_last_success_timestamp_seconds"));
    s.stop().await;
}

#[tokio::test]
async fn measurements_read_as_they_were_with_at_timestamp() {
    let s = TestServer::start_with(|b| {
        b.lake(1_000_000, Duration::from_secs(3600), None, Duration::ZERO).lake_snapshot_retention(Duration::from_secs(3600))
    })
    .await;
    let http = reqwest::Client::new();
    let flush = || async {
        let r = http.post(s.http_url("/api/v1/lake/flush?db=tt")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().await.unwrap();
        assert!(r.status().is_success());
    };
    write_lines(&s, "tt", (1..=10).map(|i| format!("cpu,host=a v={i}i {i}000000000\n")).collect()).await;
    flush().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t1 = one(&s, "SELECT now()::TIMESTAMPTZ::VARCHAR").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    write_lines(&s, "tt", (11..=25).map(|i| format!("cpu,host=b v={i}i {i}000000000\n")).collect()).await;
    flush().await;
    // Still in memory, not in any snapshot.
    write_lines(&s, "tt", "cpu,host=c v=99i 99000000000\n".into()).await;
    assert_eq!(one(&s, "SELECT count(*) FROM tt.cpu").await, "26");
    assert_eq!(one(&s, &format!("SELECT count(*) FROM tt.cpu AT (TIMESTAMP => TIMESTAMPTZ '{t1}')")).await, "10");
    assert_eq!(one(&s, &format!("SELECT sum(c.v) FROM tt.cpu AS c AT (TIMESTAMP => TIMESTAMPTZ '{t1}') WHERE c.host = 'a'")).await, "55");
    // Unqualified, after USE, and inside a join with the live view.
    let mut c = s.flight().await;
    query(&mut c, "USE tt").await.unwrap();
    let b = query(
        &mut c,
        &format!("SELECT count(*) FROM cpu AS now_rows JOIN cpu AS old_rows AT (TIMESTAMP => TIMESTAMPTZ '{t1}') USING (time)"),
    )
    .await
    .unwrap();
    assert_eq!(column_strings(&b, 0), vec!["10"]);
    // A reader with a grant may travel; one without may not.
    query(&mut c, "CREATE USER tim PASSWORD 'tim-pw-1234'").await.unwrap();
    query(&mut c, "CREATE USER ned PASSWORD 'ned-pw-1234'").await.unwrap();
    query(&mut c, "GRANT READ ON DATABASE tt TO tim").await.unwrap();
    let travel = format!("SELECT count(*) FROM tt.cpu AT (TIMESTAMP => TIMESTAMPTZ '{t1}')");
    let mut tim = s.flight_as("tim", "tim-pw-1234").await.unwrap();
    assert_eq!(column_strings(&query(&mut tim, &travel).await.unwrap(), 0), vec!["10"]);
    let mut ned = s.flight_as("ned", "ned-pw-1234").await.unwrap();
    assert!(query(&mut ned, &travel).await.unwrap_err().to_string().contains("permission denied"));
    // Compaction keeps snapshots inside the retention window.
    let r = http.post(s.http_url("/api/v1/lake/compact?db=tt")).basic_auth("admin", Some(ADMIN_PASSWORD)).send().await.unwrap();
    assert!(r.status().is_success());
    assert_eq!(one(&s, &travel).await, "10");
    // Before the measurement existed: a clear error, not rows.
    let e =
        query(&mut c, "SELECT count(*) FROM tt.cpu AT (TIMESTAMP => TIMESTAMPTZ '2001-01-01 00:00:00+00')").await.unwrap_err().to_string();
    assert!(e.to_lowercase().contains("snapshot"), "{e}");
    s.stop().await;
}
