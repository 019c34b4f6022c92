//! The PostgreSQL listener driven by tokio-postgres (a real PostgreSQL client):
//! startup and authentication, simple and extended queries, types, transactions,
//! errors with SQLSTATEs, grants, cancel.

use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::SimpleQueryMessage;

use crate::{TestServer, ADMIN_PASSWORD};

fn simple_rows(msgs: &[SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect()),
            _ => None,
        })
        .collect()
}

fn tags(msgs: &[SimpleQueryMessage]) -> Vec<u64> {
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn pg_login_startup_parameters_and_simple_queries() {
    let s = TestServer::start().await;
    let c = s.pg_as("admin", ADMIN_PASSWORD, "default").await.unwrap();

    let msgs = c.simple_query("select 1 as one; select 'a' as x union all select 'b'").await.unwrap();
    assert_eq!(simple_rows(&msgs), vec![vec![Some("1".into())], vec![Some("a".into())], vec![Some("b".into())]]);
    assert_eq!(tags(&msgs), vec![1, 2]);

    let msgs = c
        .simple_query("create table t (id int, name varchar); insert into t values (1, 'x'), (2, 'y'); update t set name = 'z' where id = 2; delete from t where id = 1")
        .await
        .unwrap();
    assert_eq!(tags(&msgs), vec![0, 2, 1, 1]);

    // What clients ask at connect time is answered in the pg layer.
    let v = c.simple_query("select pg_catalog.version()").await.unwrap();
    assert!(simple_rows(&v)[0][0].as_deref().unwrap().starts_with("PostgreSQL 15.0 (Pond "));
    for (q, want) in [
        ("show standard_conforming_strings", "on"),
        ("SHOW TRANSACTION ISOLATION LEVEL", "serializable"),
        ("select current_schema()", "main"),
        ("SET extra_float_digits = 3", ""),
        ("SET application_name = 'e2e'", ""),
        ("select current_setting('application_name')", "e2e"),
    ] {
        let r = c.simple_query(q).await.unwrap_or_else(|e| panic!("{q}: {e}"));
        if !want.is_empty() {
            assert_eq!(simple_rows(&r)[0][0].as_deref(), Some(want), "{q}");
        }
    }

    // Wrong password: 28P01; unknown database: 3D000.
    let e = s.pg_as("admin", "wrong", "default").await.err().unwrap();
    assert_eq!(e.code(), Some(&SqlState::INVALID_PASSWORD), "{e}");
    let e = s.pg_as("admin", ADMIN_PASSWORD, "nope").await.err().unwrap();
    assert_eq!(e.code(), Some(&SqlState::INVALID_CATALOG_NAME), "{e}");

    // Errors carry SQLSTATEs.
    let e = c.simple_query("selec 1").await.err().unwrap();
    assert_eq!(e.code(), Some(&SqlState::SYNTAX_ERROR), "{e}");
    let e = c.simple_query("select * from missing_table").await.err().unwrap();
    assert_eq!(e.code(), Some(&SqlState::UNDEFINED_TABLE), "{e}");
    s.stop().await;
}

#[tokio::test]
async fn pg_extended_protocol_types_and_parameters() {
    let s = TestServer::start().await;
    let c = s.pg_as("admin", ADMIN_PASSWORD, "default").await.unwrap();
    c.batch_execute(
        "create table items (id integer, big bigint, small smallint, price decimal(10,2), ok boolean, \
         name varchar, data blob, d date, ts timestamp, tstz timestamptz, f double, r real, tags integer[], u uuid); \
         insert into items values (1, 9000000000, 7, 12.34, true, 'apple', '\\x01\\x02'::blob, '2024-02-29', \
         '2024-01-02 03:04:05.123456', '2024-01-02 03:04:05+00', 1.5, 2.25, [1,2,3], '123e4567-e89b-12d3-a456-426614174000')",
    )
    .await
    .unwrap();

    // Binary results (tokio-postgres asks for binary everywhere).
    let stmt = c.prepare_typed("select * from items where id = $1", &[Type::INT4]).await.unwrap();
    let cols: Vec<&Type> = stmt.columns().iter().map(|c| c.type_()).collect();
    assert_eq!(
        cols,
        vec![
            &Type::INT4,
            &Type::INT8,
            &Type::INT2,
            &Type::NUMERIC,
            &Type::BOOL,
            &Type::TEXT,
            &Type::BYTEA,
            &Type::DATE,
            &Type::TIMESTAMP,
            &Type::TIMESTAMPTZ,
            &Type::FLOAT8,
            &Type::FLOAT4,
            &Type::INT4_ARRAY,
            &Type::UUID
        ]
    );
    let rows = c.query(&stmt, &[&1i32]).await.unwrap();
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(r.get::<_, i32>(0), 1);
    assert_eq!(r.get::<_, i64>(1), 9_000_000_000);
    assert_eq!(r.get::<_, i16>(2), 7);
    assert!(r.get::<_, bool>(4));
    assert_eq!(r.get::<_, String>(5), "apple");
    assert_eq!(r.get::<_, Vec<u8>>(6), vec![1u8, 2]);
    assert_eq!(r.get::<_, f64>(10), 1.5);
    assert_eq!(r.get::<_, f32>(11), 2.25);
    assert_eq!(r.get::<_, Vec<i32>>(12), vec![1, 2, 3]);

    // Text results through the simple protocol use PostgreSQL's spellings.
    let t = c.simple_query("select price, ok, data, d, ts, tstz, tags, u, interval '1 day 2 hours' from items").await.unwrap();
    assert_eq!(
        simple_rows(&t)[0],
        vec![
            Some("12.34".into()),
            Some("t".into()),
            Some("\\x0102".into()),
            Some("2024-02-29".into()),
            Some("2024-01-02 03:04:05.123456".into()),
            Some("2024-01-02 03:04:05+00".into()),
            Some("{1,2,3}".into()),
            Some("123e4567-e89b-12d3-a456-426614174000".into()),
            Some("1 day 02:00:00".into()),
        ]
    );

    // Parameters of several types, binary-encoded by the client.
    let ins = c
        .prepare_typed(
            "insert into items (id, big, name, ok, f) values ($1, $2, $3, $4, $5)",
            &[Type::INT4, Type::INT8, Type::TEXT, Type::BOOL, Type::FLOAT8],
        )
        .await
        .unwrap();
    let n = c.execute(&ins, &[&2i32, &5i64, &"pear", &false, &0.25f64]).await.unwrap();
    assert_eq!(n, 1);
    // Untyped parameters get the types DuckDB infers (as PostgreSQL would say
    // int4 and bool here), and values are sent in binary by those types.
    let q = c.prepare("select name, big, f from items where id = $1 and ok = $2").await.unwrap();
    assert_eq!(q.params(), &[Type::INT4, Type::BOOL]);
    let row = c.query_one(&q, &[&2i32, &false]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "pear");
    assert_eq!(row.get::<_, i64>(1), 5);

    // A portal with a row limit is suspended and resumed.
    c.batch_execute("create table nums as select range::integer as n from range(10)").await.unwrap();
    let mut c = c;
    let tx = c.transaction().await.unwrap();
    let st = tx.prepare("select n from nums order by n").await.unwrap();
    let portal = tx.bind(&st, &[]).await.unwrap();
    let mut seen = Vec::new();
    for want in [4, 4, 2] {
        let part = tx.query_portal(&portal, 4).await.unwrap();
        assert_eq!(part.len(), want);
        seen.extend(part.iter().map(|r| r.get::<_, i32>(0)));
    }
    assert_eq!(seen, (0..10).collect::<Vec<i32>>());
    tx.commit().await.unwrap();
    s.stop().await;
}

#[tokio::test]
async fn pg_transactions_abort_until_rollback() {
    let s = TestServer::start().await;
    let c = s.pg_as("admin", ADMIN_PASSWORD, "default").await.unwrap();
    c.batch_execute("create table acct (id int primary key, v int)").await.unwrap();
    c.batch_execute("begin; insert into acct values (1, 1)").await.unwrap();
    // A failing statement aborts the block: everything is refused until ROLLBACK.
    let e = c.batch_execute("insert into acct values (1, 2)").await.err().unwrap();
    assert_eq!(e.code(), Some(&SqlState::UNIQUE_VIOLATION), "{e}");
    let e = c.batch_execute("select 1").await.err().unwrap();
    assert_eq!(e.code(), Some(&SqlState::IN_FAILED_SQL_TRANSACTION), "{e}");
    c.batch_execute("rollback").await.unwrap();
    let n = c.query_one("select count(*) from acct", &[]).await.unwrap();
    assert_eq!(n.get::<_, i64>(0), 0);
    // COMMIT works, and a commit without a transaction is harmless.
    c.batch_execute("begin; insert into acct values (2, 2); commit; commit").await.unwrap();
    let n = c.query_one("select count(*) from acct", &[]).await.unwrap();
    assert_eq!(n.get::<_, i64>(0), 1);
    s.stop().await;
}

#[tokio::test]
async fn pg_grants_apply_and_databases_are_filtered() {
    let s = TestServer::start().await;
    let admin = s.pg_as("admin", ADMIN_PASSWORD, "default").await.unwrap();
    admin
        .batch_execute(
            "CREATE DATABASE pub; CREATE DATABASE sec; CREATE TABLE pub.main.t AS SELECT range AS i FROM range(3); \
             CREATE TABLE sec.main.secret AS SELECT 'TOPSECRET' AS v; CREATE USER alice PASSWORD 'alice-pw-123'; \
             GRANT READ ON DATABASE pub TO alice",
        )
        .await
        .unwrap();
    let alice = s.pg_as("alice", "alice-pw-123", "pub").await.unwrap();
    let n = alice.query_one("select count(*) from t", &[]).await.unwrap();
    assert_eq!(n.get::<_, i64>(0), 3);
    let e = alice.simple_query("select * from sec.main.secret").await.err().unwrap();
    assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{e}");
    assert!(!e.to_string().contains("TOPSECRET"));
    let e = alice.simple_query("insert into t values (9)").await.err().unwrap();
    assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{e}");
    // A request of several statements runs none of them if any is denied.
    let e = alice.simple_query("create temp table scratch (a int); select * from sec.main.secret").await.err().unwrap();
    assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{e}");
    let e = alice.simple_query("select * from scratch").await.err().unwrap();
    assert_eq!(e.code(), Some(&SqlState::UNDEFINED_TABLE), "{e}");
    let dbs = simple_rows(&alice.simple_query("SHOW DATABASES").await.unwrap());
    let names: Vec<String> = dbs.into_iter().filter_map(|r| r[0].clone()).collect();
    assert!(names.contains(&"pub".to_string()) && !names.contains(&"sec".to_string()), "{names:?}");
    // Connecting to a database without a grant is refused.
    let e = s.pg_as("alice", "alice-pw-123", "sec").await.err().unwrap();
    assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{e}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_cancel_request_interrupts_duckdb() {
    let s = TestServer::start().await;
    let c = s.pg_as("admin", ADMIN_PASSWORD, "default").await.unwrap();
    let token = c.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        token.cancel_query(tokio_postgres::NoTls).await
    });
    let started = std::time::Instant::now();
    let Err(e) = c.simple_query("SELECT count(*) FROM range(1000000000000) a").await else { panic!("the query was not cancelled") };
    assert_eq!(e.code(), Some(&SqlState::QUERY_CANCELED), "{e}");
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    canceller.await.unwrap().unwrap();
    // The session goes on.
    let r = c.simple_query("select 'next'").await.unwrap();
    assert_eq!(simple_rows(&r)[0][0].as_deref(), Some("next"));
    s.stop().await;
}

#[tokio::test]
async fn pg_copy_to_stdout_in_text_csv_and_binary() {
    use futures::StreamExt;
    let s = TestServer::start().await;
    let c = s.pg_as("admin", ADMIN_PASSWORD, "default").await.unwrap();
    c.batch_execute("create table cp (id int, name varchar); insert into cp values (1, 'a,b'), (2, NULL), (3, 'tab\there')").await.unwrap();
    let read = |sql: &'static str| {
        let c = &c;
        async move {
            let stream = c.copy_out(sql).await.unwrap();
            let parts: Vec<Vec<u8>> = stream.map(|r| r.unwrap().to_vec()).collect().await;
            parts.concat()
        }
    };
    assert_eq!(read("COPY cp TO STDOUT").await, b"1\ta,b\n2\t\\N\n3\ttab\\there\n");
    assert_eq!(
        read("COPY (select * from cp order by id) TO STDOUT WITH (FORMAT csv, HEADER)").await,
        b"id,name\n1,\"a,b\"\n2,\n3,tab\there\n"
    );
    let bin = read("COPY (select id from cp where id = 1) TO STDOUT (FORMAT binary)").await;
    assert!(bin.starts_with(b"PGCOPY\n\xFF\r\n\x00"));
    assert_eq!(&bin[19..], &[0, 1, 0, 0, 0, 4, 0, 0, 0, 1, 0xFF, 0xFF]);
    // The sandbox applies: a user without a grant cannot export.
    c.batch_execute("CREATE USER eve PASSWORD 'eve-pw-12345'").await.unwrap();
    let eve = s.pg_as("eve", "eve-pw-12345", "default").await.unwrap();
    let e = eve.copy_out("COPY cp TO STDOUT").await.err().unwrap();
    assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{e}");
    s.stop().await;
}
