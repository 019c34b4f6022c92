//! One request line → a [`Command`]: TCP-DuckDB's commands become Pond SQL
//! statements (quoted with the engine's `quote_ident`/`quote_literal`), anything
//! else is SQL as written.
//!
//! The words of a command are separated by whitespace and its keywords are
//! case-insensitive; names and passwords are taken as written (one word each,
//! case kept), except `link`'s connection string, which is the rest of the line.
//!
//! Some commands start like SQL (`create database`, `create user`, `commit`,
//! `rollback`, `start transaction`). They are recognised only in their
//! TCP-DuckDB shape; a line that continues like SQL (`create database if not
//! exists x`, `create user x password '…'`, `start transaction read only`) is
//! passed to the engine unchanged.
//!
//! Privileges: `grant database <db> <user> read` is Pond's READ on the database
//! (SELECT on every table), `write` is READ and WRITE (WRITE alone lets a user
//! change data and tables but not read them, which is not what TCP-DuckDB's
//! `write` meant). `grant table` takes SELECT, INSERT, UPDATE, DELETE or ALL.

use pond_engine::sql::{quote_ident, quote_literal};

use crate::error::{Error, Result};

/// What one request line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `login <user> <password>`: authenticate and open the connection's session.
    Login {
        user: String,
        password: String,
    },
    /// `start transaction`.
    Begin,
    Commit,
    Rollback,
    /// A protocol command translated to one Pond statement; answers `success`.
    /// `name` is the command (what logs may show: `sql` can hold a password
    /// or a connection string).
    Pond {
        name: &'static str,
        sql: String,
        /// The password or connection string in `sql`, kept out of error answers.
        secret: Option<String>,
    },
    /// Anything else: SQL as the client wrote it.
    Sql(String),
}

impl Command {
    /// What a log line may say about the request (never its arguments).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Login { .. } => "login",
            Command::Begin => "start transaction",
            Command::Commit => "commit",
            Command::Rollback => "rollback",
            Command::Pond { name, .. } => name,
            Command::Sql(_) => "sql",
        }
    }
}

const LOGIN: &str = "login <user> <password>";
const CREATE_DATABASE: &str = "create database <db>";
const CREATE_USER: &str = "create user <user> <password>";
const CONNECT: &str = "connect <db>";
const GRANT_DATABASE: &str = "grant database <db> <user> read|write";
const GRANT_TABLE: &str = "grant table <db> <[schema.]table> <user> <privilege>[,<privilege>…] (select, insert, update, delete or all)";
const GRANT: &str = "grant database <db> <user> read|write, or grant table <db> <[schema.]table> <user> <privilege>…";
const LINK: &str = "link <db> <connection string>";
const MIGRATE: &str = "migrate <db>";
const UPDATE_DATABASE: &str = "update database <old name> <new name>";
const UPDATE_USER: &str = "update user username <old name> <new name>, or update user password <user> <new password>";

/// Parses one request (the line without its terminator).
pub fn parse(line: &str) -> Result<Command> {
    let line = line.trim();
    let words: Vec<&str> = line.split_whitespace().collect();
    let is = |i: usize, kw: &str| words.get(i).is_some_and(|w| w.eq_ignore_ascii_case(kw));
    let n = words.len();
    let usage = |command: &'static str, usage: &'static str| {
        Err(Error::Usage { command, problem: format!("{} argument(s) given", n.saturating_sub(command_words(command))), usage })
    };

    if n == 0 {
        return Err(Error::Empty);
    }
    if is(0, "login") {
        return match words.as_slice() {
            [_, user, password] => Ok(Command::Login { user: user.to_string(), password: password.to_string() }),
            _ => usage("login", LOGIN),
        };
    }
    if is(0, "create") && is(1, "database") {
        return match words.as_slice() {
            [_, _, db] => Ok(pond("create database", format!("CREATE DATABASE {}", quote_ident(db)))),
            _ if is(2, "if") => Ok(Command::Sql(line.to_string())),
            _ => usage("create database", CREATE_DATABASE),
        };
    }
    if is(0, "create") && is(1, "user") {
        return match words.as_slice() {
            [_, _, user, password] => {
                Ok(secret("create user", format!("CREATE USER {} PASSWORD {}", quote_ident(user), quote_literal(password)), password))
            }
            // Pond's own CREATE USER … PASSWORD '…' [SUPERUSER].
            _ if n > 4 && (is(3, "password") || is(3, "with")) => Ok(Command::Sql(line.to_string())),
            _ => usage("create user", CREATE_USER),
        };
    }
    if is(0, "connect") {
        return match words.as_slice() {
            [_, db] => Ok(pond("connect", format!("USE {}", quote_ident(db)))),
            _ => usage("connect", CONNECT),
        };
    }
    if is(0, "grant") && is(1, "database") {
        let [_, _, db, user, privilege] = words.as_slice() else { return usage("grant database", GRANT_DATABASE) };
        let privileges = match privilege.to_ascii_lowercase().as_str() {
            "read" => "READ",
            "write" => "READ, WRITE",
            _ => {
                return Err(Error::Usage {
                    command: "grant database",
                    problem: format!("unknown privilege '{privilege}'"),
                    usage: GRANT_DATABASE,
                })
            }
        };
        return Ok(pond("grant database", format!("GRANT {privileges} ON DATABASE {} TO {}", quote_ident(db), quote_ident(user))));
    }
    if is(0, "grant") && is(1, "table") {
        if n < 6 {
            return usage("grant table", GRANT_TABLE);
        }
        let (db, table, user) = (words[2], words[3], words[4]);
        let (schema, table) = match table.split('.').collect::<Vec<_>>().as_slice() {
            [t] if !t.is_empty() => ("main", *t),
            [s, t] if !s.is_empty() && !t.is_empty() => (*s, *t),
            _ => {
                return Err(Error::Usage {
                    command: "grant table",
                    problem: format!("'{table}' is not a table name (use <table> or <schema>.<table>)"),
                    usage: GRANT_TABLE,
                })
            }
        };
        let mut privileges: Vec<&'static str> = Vec::new();
        for p in words[5..].iter().flat_map(|w| w.split(',')).filter(|p| !p.is_empty()) {
            let name = match p.to_ascii_lowercase().as_str() {
                "select" => "SELECT",
                "insert" => "INSERT",
                "update" => "UPDATE",
                "delete" => "DELETE",
                "all" => "ALL",
                _ => return Err(Error::Usage { command: "grant table", problem: format!("unknown privilege '{p}'"), usage: GRANT_TABLE }),
            };
            if !privileges.contains(&name) {
                privileges.push(name);
            }
        }
        if privileges.is_empty() {
            return Err(Error::Usage { command: "grant table", problem: "no privilege given".into(), usage: GRANT_TABLE });
        }
        return Ok(pond(
            "grant table",
            format!(
                "GRANT {} ON TABLE {}.{}.{} TO {}",
                privileges.join(", "),
                quote_ident(db),
                quote_ident(schema),
                quote_ident(table),
                quote_ident(user)
            ),
        ));
    }
    if is(0, "grant") && n >= 2 && !line.to_ascii_lowercase().split_whitespace().any(|w| w == "on" || w == "to") {
        // Neither a protocol grant nor SQL's GRANT … ON/TO …: say what the protocol expects.
        return Err(Error::Usage { command: "grant", problem: format!("unknown grant kind '{}'", words[1]), usage: GRANT });
    }
    if is(0, "link") {
        let (head, rest) = split_words(line, 2);
        return match (head.as_slice(), rest) {
            ([_, db], conn) if !conn.is_empty() => {
                Ok(secret("link", format!("LINK DATABASE {} TO POSTGRES {}", quote_ident(db), quote_literal(conn)), conn))
            }
            _ => Err(Error::Usage { command: "link", problem: "a database and a connection string are needed".into(), usage: LINK }),
        };
    }
    if is(0, "migrate") {
        return match words.as_slice() {
            [_, db] => Ok(pond("migrate", format!("SYNC DATABASE {}", quote_ident(db)))),
            _ => usage("migrate", MIGRATE),
        };
    }
    if is(0, "update") && is(1, "database") {
        return match words.as_slice() {
            [_, _, old, new] => Ok(pond("update database", format!("ALTER DATABASE {} RENAME TO {}", quote_ident(old), quote_ident(new)))),
            _ => usage("update database", UPDATE_DATABASE),
        };
    }
    if is(0, "update") && is(1, "user") {
        return match words.as_slice() {
            [_, _, what, old, new] if what.eq_ignore_ascii_case("username") => {
                Ok(pond("update user username", format!("ALTER USER {} RENAME TO {}", quote_ident(old), quote_ident(new))))
            }
            [_, _, what, user, password] if what.eq_ignore_ascii_case("password") => Ok(secret(
                "update user password",
                format!("ALTER USER {} PASSWORD {}", quote_ident(user), quote_literal(password)),
                password,
            )),
            [_, _, what, ..] if !what.eq_ignore_ascii_case("username") && !what.eq_ignore_ascii_case("password") => {
                Err(Error::Usage { command: "update user", problem: format!("unknown field '{what}'"), usage: UPDATE_USER })
            }
            _ => Err(Error::Usage { command: "update user", problem: "wrong number of arguments".into(), usage: UPDATE_USER }),
        };
    }
    if n == 2 && is(0, "start") && is(1, "transaction") {
        return Ok(Command::Begin);
    }
    if n == 1 && is(0, "commit") {
        return Ok(Command::Commit);
    }
    if n == 1 && is(0, "rollback") {
        return Ok(Command::Rollback);
    }
    Ok(Command::Sql(line.to_string()))
}

fn pond(name: &'static str, sql: String) -> Command {
    Command::Pond { name, sql, secret: None }
}

fn secret(name: &'static str, sql: String, secret: &str) -> Command {
    Command::Pond { name, sql, secret: Some(secret.to_string()) }
}

/// How many words name the command (`create database` → 2).
fn command_words(command: &str) -> usize {
    command.split_whitespace().count()
}

/// The first `n` whitespace-separated words of `line`, and the rest of the line (trimmed).
fn split_words(line: &str, n: usize) -> (Vec<&str>, &str) {
    let mut words = Vec::with_capacity(n);
    let mut rest = line.trim_start();
    while words.len() < n && !rest.is_empty() {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        words.push(&rest[..end]);
        rest = rest[end..].trim_start();
    }
    (words, rest.trim_end())
}

/// Whether a SQL request answers with rows (a JSON array) rather than
/// `success`: judged by the first word of its last statement, the way
/// PostgreSQL front ends tell queries from commands.
pub fn returns_rows(sql: &str) -> bool {
    let statements = pond_engine::sql::split_statements(sql);
    let Some(last) = statements.last() else { return false };
    let first = last
        .split(|c: char| c.is_whitespace() || c == '(' || c == ';')
        .find(|w| !w.is_empty())
        .map(str::to_ascii_uppercase)
        .unwrap_or_default();
    match first.as_str() {
        "SELECT" | "WITH" | "VALUES" | "FROM" | "TABLE" | "SHOW" | "DESCRIBE" | "DESC" | "PRAGMA" | "SUMMARIZE" | "EXPLAIN" | "CALL"
        | "PIVOT" | "UNPIVOT" => true,
        "INSERT" | "UPDATE" | "DELETE" | "MERGE" => last.to_ascii_lowercase().contains("returning"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sql(line: &str) -> String {
        match parse(line).unwrap() {
            Command::Pond { sql, .. } => sql,
            other => panic!("{line}: {other:?}"),
        }
    }

    fn usage_error(line: &str) -> String {
        let e = parse(line).unwrap_err();
        assert!(matches!(e, Error::Usage { .. }), "{line}: {e:?}");
        e.to_string()
    }

    #[test]
    fn login() {
        assert_eq!(parse("login alice s3cret").unwrap(), Command::Login { user: "alice".into(), password: "s3cret".into() });
        assert_eq!(parse("  LOGIN  Alice pw  ").unwrap(), Command::Login { user: "Alice".into(), password: "pw".into() });
        for bad in ["login", "login alice", "login a b c", "LOGIN Alice 'p w'"] {
            let e = usage_error(bad);
            assert!(e.contains("login <user> <password>"), "{e}");
        }
        // The password never appears in the error.
        assert!(!usage_error("login alice hunter2 extra").contains("hunter2"));
    }

    #[test]
    fn databases() {
        assert_eq!(sql("create database sales"), r#"CREATE DATABASE "sales""#);
        assert_eq!(sql("CREATE DATABASE Sales"), r#"CREATE DATABASE "Sales""#);
        assert_eq!(parse("create database if not exists sales").unwrap(), Command::Sql("create database if not exists sales".into()));
        assert!(usage_error("create database").contains("create database <db>"));
        assert!(usage_error("create database a b").contains("create database <db>"));
        assert_eq!(sql("connect sales"), r#"USE "sales""#);
        assert!(usage_error("connect").contains("connect <db>"));
        assert!(usage_error("connect a b").contains("connect <db>"));
        assert_eq!(sql("update database old new"), r#"ALTER DATABASE "old" RENAME TO "new""#);
        assert!(usage_error("update database old").contains("update database <old name> <new name>"));
        assert_eq!(sql("migrate sales"), r#"SYNC DATABASE "sales""#);
        assert!(usage_error("migrate").contains("migrate <db>"));
    }

    #[test]
    fn users() {
        assert_eq!(sql("create user bob pw"), r#"CREATE USER "bob" PASSWORD 'pw'"#);
        assert_eq!(sql("update user username bob robert"), r#"ALTER USER "bob" RENAME TO "robert""#);
        assert_eq!(sql("update user password bob new-pw"), r#"ALTER USER "bob" PASSWORD 'new-pw'"#);
        // Pond's own syntax goes to the engine as written.
        let own = "CREATE USER bob PASSWORD 'x y' SUPERUSER";
        assert_eq!(parse(own).unwrap(), Command::Sql(own.into()));
        assert!(usage_error("create user bob").contains("create user <user> <password>"));
        assert!(!usage_error("create user bob secret-pw extra").contains("secret-pw"));
        assert!(usage_error("update user email bob x").contains("unknown field 'email'"));
        assert!(usage_error("update user password bob").contains("update user password <user> <new password>"));
        assert!(!usage_error("update user password bob pw extra").contains("pw extra"));
    }

    #[test]
    fn hostile_names_and_passwords_are_quoted() {
        assert_eq!(sql(r#"create user a"b O'Brien"#), r#"CREATE USER "a""b" PASSWORD 'O''Brien'"#);
        assert_eq!(sql("create user x ');DROP"), r#"CREATE USER "x" PASSWORD ''');DROP'"#);
        assert_eq!(sql(r#"connect x";DROP"#), r#"USE "x"";DROP""#);
        assert_eq!(sql(r#"update user password u '--"#), r#"ALTER USER "u" PASSWORD '''--'"#);
        assert_eq!(sql(r#"grant database d"x u"y read"#), r#"GRANT READ ON DATABASE "d""x" TO "u""y""#);
        // The statements the engine sees classify as the intended Pond statements.
        use pond_engine::sql::{classify, PondStatement, Statement};
        let st = classify(&sql("create user x ');DROP")).unwrap();
        assert_eq!(st, Statement::Pond(PondStatement::CreateUser { name: "x".into(), password: "');DROP".into(), superuser: false }));
        let st = classify(&sql(r#"update user password a"b pa'ss"#)).unwrap();
        assert_eq!(st, Statement::Pond(PondStatement::AlterUserPassword { name: "a\"b".into(), password: "pa'ss".into() }));
        let st = classify(&sql(r#"update database x"y z"#)).unwrap();
        assert_eq!(st, Statement::Pond(PondStatement::RenameDatabase { from: "x\"y".into(), to: "z".into() }));
    }

    #[test]
    fn grants() {
        assert_eq!(sql("grant database sales bob read"), r#"GRANT READ ON DATABASE "sales" TO "bob""#);
        assert_eq!(sql("GRANT DATABASE sales bob WRITE"), r#"GRANT READ, WRITE ON DATABASE "sales" TO "bob""#);
        assert!(usage_error("grant database sales bob admin").contains("unknown privilege 'admin'"));
        assert!(usage_error("grant database sales bob").contains("read|write"));
        assert_eq!(sql("grant table sales orders bob select"), r#"GRANT SELECT ON TABLE "sales"."main"."orders" TO "bob""#);
        assert_eq!(
            sql("grant table sales s1.orders bob select, INSERT,update delete,select"),
            r#"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE "sales"."s1"."orders" TO "bob""#
        );
        assert_eq!(sql("grant table d t u all"), r#"GRANT ALL ON TABLE "d"."main"."t" TO "u""#);
        assert!(usage_error("grant table sales orders bob").contains("grant table <db>"));
        assert!(usage_error("grant table sales orders bob drop").contains("unknown privilege 'drop'"));
        assert!(usage_error("grant table sales a.b.c bob select").contains("not a table name"));
        assert!(usage_error("grant table sales .t bob select").contains("not a table name"));
        assert!(usage_error("grant table sales t bob ,").contains("no privilege"));
        assert!(usage_error("grant everything").contains("unknown grant kind"));
        // SQL GRANT statements pass through.
        let own = "GRANT SELECT ON sales.main.orders TO bob";
        assert_eq!(parse(own).unwrap(), Command::Sql(own.into()));
        // The engine's classifier reads them as the intended grants.
        use pond_engine::sql::{classify, GrantOn, PondStatement, Statement};
        let st = classify(&sql("grant table sales s1.orders bob select,insert")).unwrap();
        assert_eq!(
            st,
            Statement::Pond(PondStatement::Grant {
                revoke: false,
                privileges: vec!["select".into(), "insert".into()],
                on: GrantOn::Table(vec!["sales".into(), "s1".into(), "orders".into()]),
                user: "bob".into(),
            })
        );
        let st = classify(&sql("grant database sales bob write")).unwrap();
        assert_eq!(
            st,
            Statement::Pond(PondStatement::Grant {
                revoke: false,
                privileges: vec!["read".into(), "write".into()],
                on: GrantOn::Database("sales".into()),
                user: "bob".into(),
            })
        );
    }

    #[test]
    fn link_keeps_the_connection_string_whole_and_quoted() {
        assert_eq!(
            sql("link sales host=db.example port=5432 dbname=shop user=app password=it's"),
            r#"LINK DATABASE "sales" TO POSTGRES 'host=db.example port=5432 dbname=shop user=app password=it''s'"#
        );
        assert_eq!(sql("LINK sales   postgresql://u:p@h/db  "), r#"LINK DATABASE "sales" TO POSTGRES 'postgresql://u:p@h/db'"#);
        let e = usage_error("link sales");
        assert!(e.contains("link <db> <connection string>"), "{e}");
        assert!(usage_error("link").contains("connection string"));
        let Command::Pond { name, secret, .. } = parse("link sales host=x password=y").unwrap() else { panic!() };
        assert_eq!((name, secret.as_deref()), ("link", Some("host=x password=y")));
    }

    #[test]
    fn transactions_and_sql() {
        assert_eq!(parse("start transaction").unwrap(), Command::Begin);
        assert_eq!(parse("START TRANSACTION").unwrap(), Command::Begin);
        assert_eq!(parse("commit").unwrap(), Command::Commit);
        assert_eq!(parse("RollBack").unwrap(), Command::Rollback);
        assert_eq!(parse("start transaction read only").unwrap(), Command::Sql("start transaction read only".into()));
        assert_eq!(parse("select 1;").unwrap(), Command::Sql("select 1;".into()));
        assert_eq!(parse("update t set a = 1").unwrap(), Command::Sql("update t set a = 1".into()));
        assert!(matches!(parse("   ").unwrap_err(), Error::Empty));
    }

    #[test]
    fn which_sql_returns_rows() {
        for q in [
            "select 1",
            "  (SELECT 1)",
            "with a as (select 1) select * from a",
            "from t",
            "show tables",
            "describe t",
            "insert into t values (1) returning a",
            "create table t (a int); select 1",
            "values (1)",
        ] {
            assert!(returns_rows(q), "{q}");
        }
        for q in ["create table t (a int)", "insert into t values (1)", "delete from t", "select 1; drop table t", "begin", "use x", ""] {
            assert!(!returns_rows(q), "{q}");
        }
    }
}
