//! Splitting SQL text into statements and recognising Pond's own statements
//! (`CREATE DATABASE`, `DROP DATABASE`, `ALTER DATABASE … RENAME TO`,
//! `SHOW DATABASES`, `USE`), which Pond executes itself instead of DuckDB.
//!
//! The splitter understands DuckDB's lexical rules that can hide a `;`: single-quoted
//! strings (with `''`), `E'…'` strings with backslash escapes, double-quoted
//! identifiers, dollar-quoted strings, `--` and `/* */` comments.

use crate::error::{Error, Result};

/// One statement of a multi-statement string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    /// Handled by Pond.
    Pond(PondStatement),
    /// Passed to DuckDB as written.
    DuckDb(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PondStatement {
    CreateDatabase {
        name: String,
        if_not_exists: bool,
    },
    DropDatabase {
        name: String,
        if_exists: bool,
    },
    RenameDatabase {
        from: String,
        to: String,
    },
    ShowDatabases,
    /// Tables and views of the current schema, only those the caller may see.
    ShowTables,
    Use {
        database: String,
        schema: Option<String>,
    },
    CreateUser {
        name: String,
        password: String,
        superuser: bool,
    },
    AlterUserPassword {
        name: String,
        password: String,
    },
    RenameUser {
        from: String,
        to: String,
    },
    AlterUserSuperuser {
        name: String,
        superuser: bool,
    },
    DropUser {
        name: String,
        if_exists: bool,
    },
    /// GRANT/REVOKE: `object` is `None` for `ON DATABASE d` (then `database` is set),
    /// else the dotted table name as written (1 to 3 parts).
    Grant {
        revoke: bool,
        privileges: Vec<String>,
        on: GrantOn,
        user: String,
    },
    ShowUsers,
    ShowGrants {
        user: Option<String>,
    },
    CreateRole {
        name: String,
    },
    DropRole {
        name: String,
        if_exists: bool,
    },
    /// GRANT role TO member / REVOKE role FROM member.
    GrantRole {
        revoke: bool,
        role: String,
        member: String,
    },
    /// `ATTACH '<uri>' AS name (TYPE hive, …)`: an external catalog.
    AttachCatalog {
        name: String,
        uri: String,
        /// Upper-cased option names (TYPE included).
        options: std::collections::BTreeMap<String, String>,
        if_not_exists: bool,
    },
    /// `DETACH name`: an external catalog, or (passed on as `text`) a DuckDB attachment.
    Detach {
        name: String,
        if_exists: bool,
        text: String,
    },
    /// `REFRESH CATALOG name [db [table]]`.
    RefreshCatalog {
        name: String,
        namespace: Option<String>,
        table: Option<String>,
    },
    /// `CREATE [OR REPLACE] SECRET name (TYPE s3, …)`: a Pond secret (sealed at rest).
    CreateSecret(pond_secrets::CreateSecret),
    DropSecret {
        name: String,
        if_exists: bool,
    },
    ShowSecrets,
    /// `LINK DATABASE x TO POSTGRES '<connection>' | SECRET '<name>' [(SCHEMAS …, TABLES …, MODE …)]`.
    LinkDatabase {
        name: String,
        source: LinkSource,
        /// Upper-cased option names.
        options: std::collections::BTreeMap<String, String>,
    },
    /// `SYNC DATABASE x`.
    SyncDatabase {
        name: String,
    },
    /// `UNLINK DATABASE x`.
    UnlinkDatabase {
        name: String,
    },
    ShowLinks,
    /// `SHOW NODES`: the nodes sharing the lake (`--node-id`).
    ShowNodes,
    /// `BACKUP [TO '<directory or s3://bucket/prefix>']` (`pond-backup`).
    Backup {
        target: Option<String>,
    },
    /// Job statements (whole text; `pond-jobs` parses it): `CREATE/DROP CONTINUOUS
    /// QUERY`, `SHOW CONTINUOUS QUERIES`, `IMPORT INTO …`, `CREATE/DROP/RUN EXPORT
    /// JOB`, `SHOW EXPORT JOBS`, `SHOW JOBS`, `CANCEL JOB`.
    Job(String),
}

/// Where a link's connection comes from. `Debug` never shows a connection string.
#[derive(Clone, PartialEq, Eq)]
pub enum LinkSource {
    /// A connection string written in the statement (sealed into a secret by LINK).
    Connection(String),
    /// A Pond secret of TYPE postgres.
    Secret(String),
}

impl std::fmt::Debug for LinkSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkSource::Connection(_) => f.write_str("Connection(<redacted>)"),
            LinkSource::Secret(s) => write!(f, "Secret({s:?})"),
        }
    }
}

/// What a GRANT or REVOKE names, before resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantOn {
    Database(String),
    /// 1 to 3 name parts.
    Table(Vec<String>),
}

impl PondStatement {
    /// Whether the statement text carries a secret and must never be logged or echoed.
    pub fn has_secret(&self) -> bool {
        matches!(
            self,
            PondStatement::CreateUser { .. }
                | PondStatement::AlterUserPassword { .. }
                | PondStatement::CreateSecret(_)
                | PondStatement::LinkDatabase { source: LinkSource::Connection(_), .. }
        )
    }
}

/// Splits `sql` into statements, dropping empty ones (only whitespace/comments).
pub fn split_statements(sql: &str) -> Vec<String> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' => {
                let escapes = i > 0 && matches!(bytes[i - 1], b'e' | b'E') && (i < 2 || !is_ident_byte(bytes[i - 2]));
                i = skip_quoted(bytes, i, b'\'', escapes);
            }
            b'"' => i = skip_quoted(bytes, i, b'"', false),
            // DuckDB ends a `--` comment at a carriage return as well as a newline.
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i = (i + 2).min(bytes.len());
            }
            b'$' => i = skip_dollar_quoted(bytes, i),
            b';' => {
                push_statement(&mut out, &sql[start..i]);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    push_statement(&mut out, &sql[start..]);
    out
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn push_statement(out: &mut Vec<String>, text: &str) {
    if !tokenize(text).is_empty() {
        out.push(text.trim().to_string());
    }
}

/// Returns the index just past the closing quote (or the end of input).
fn skip_quoted(bytes: &[u8], open: usize, quote: u8, backslash_escapes: bool) -> usize {
    let mut i = open + 1;
    while i < bytes.len() {
        if backslash_escapes && bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

/// `$tag$ … $tag$`; a `$` that does not open a tag (e.g. `$1`) is skipped alone.
fn skip_dollar_quoted(bytes: &[u8], open: usize) -> usize {
    let mut j = open + 1;
    while j < bytes.len() && is_ident_byte(bytes[j]) && !(j == open + 1 && bytes[j].is_ascii_digit()) {
        j += 1;
    }
    if j >= bytes.len() || bytes[j] != b'$' {
        return open + 1;
    }
    let tag = &bytes[open..=j];
    let mut k = j + 1;
    while k + tag.len() <= bytes.len() {
        if &bytes[k..k + tag.len()] == tag {
            return k + tag.len();
        }
        k += 1;
    }
    bytes.len()
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// Unquoted word, lower-cased.
    Word(String),
    /// Double-quoted identifier, as written.
    Quoted(String),
    Symbol(char),
    /// Single-quoted string literal, unescaped.
    Str(String),
    Other,
}

/// The text of a quoted token starting at `chars[open]` (the quote doubled
/// inside it stands for itself) and the index just past its closing quote.
fn unquote_at(chars: &[char], open: usize) -> (String, usize) {
    let quote = chars[open];
    let mut s = String::new();
    let mut i = open + 1;
    while i < chars.len() {
        if chars[i] == quote {
            if chars.get(i + 1) == Some(&quote) {
                s.push(quote);
                i += 2;
                continue;
            }
            break;
        }
        s.push(chars[i]);
        i += 1;
    }
    (s, i + 1)
}

fn tokenize(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' && chars[i] != '\r' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
        } else if c == '"' || c == '\'' {
            let (text, next) = unquote_at(&chars, i);
            i = next;
            out.push(if c == '"' { Token::Quoted(text) } else { Token::Str(text) });
        } else if c.is_alphanumeric() || c == '_' {
            let mut s = String::new();
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '-') {
                s.push(chars[i]);
                i += 1;
            }
            out.push(Token::Word(s.to_lowercase()));
        } else if matches!(c, '.' | ';' | '(' | ')' | ',') {
            out.push(Token::Symbol(c));
            i += 1;
        } else {
            out.push(Token::Other);
            i += 1;
        }
    }
    out
}

fn is_word(t: Option<&Token>, w: &str) -> bool {
    matches!(t, Some(Token::Word(x)) if x == w)
}

fn ident(t: Option<&Token>) -> Option<String> {
    match t {
        Some(Token::Word(w)) => Some(w.clone()),
        Some(Token::Quoted(q)) => Some(q.clone()),
        _ => None,
    }
}

/// `ATTACH [DATABASE] [IF NOT EXISTS] '<uri>' [AS] name (OPTION value, …)` whose
/// TYPE is an external catalog (`hive`, `metastore`, `glue`, `dataproc`); None for DuckDB's own ATTACH.
fn classify_attach(t: &[Token], statement: &str) -> Result<Option<PondStatement>> {
    let syntax = |what: &str| Error::InvalidRequest(format!("syntax error in '{}': expected {what}", statement.trim()));
    let mut i = 1;
    if is_word(t.get(i), "database") {
        i += 1;
    }
    let if_not_exists = is_word(t.get(i), "if") && is_word(t.get(i + 1), "not") && is_word(t.get(i + 2), "exists");
    if if_not_exists {
        i += 3;
    }
    let Some(Token::Str(uri)) = t.get(i) else { return Ok(None) };
    i += 1;
    if is_word(t.get(i), "as") {
        i += 1;
    }
    let Some(name) = ident(t.get(i)) else { return Ok(None) };
    i += 1;
    let mut options = std::collections::BTreeMap::new();
    if t.get(i) == Some(&Token::Symbol('(')) {
        i += 1;
        loop {
            let Some(Token::Word(key)) = t.get(i) else { return Ok(None) };
            let key = key.to_ascii_uppercase();
            i += 1;
            let value = match t.get(i) {
                Some(Token::Word(v)) | Some(Token::Str(v)) | Some(Token::Quoted(v)) => {
                    i += 1;
                    v.clone()
                }
                _ => "true".to_string(),
            };
            options.insert(key, value);
            match t.get(i) {
                Some(Token::Symbol(',')) => i += 1,
                Some(Token::Symbol(')')) => {
                    i += 1;
                    break;
                }
                _ => {
                    if options.get("TYPE").is_some_and(|ty| is_catalog_type(ty)) {
                        return Err(syntax("ATTACH '<uri>' AS <name> (TYPE hive, OPTION value, …)"));
                    }
                    return Ok(None);
                }
            }
        }
    }
    if !options.get("TYPE").is_some_and(|ty| is_catalog_type(ty)) {
        return Ok(None);
    }
    if !(t.len() == i || (t.len() == i + 1 && t[i] == Token::Symbol(';'))) {
        return Err(syntax("nothing after the ATTACH options"));
    }
    Ok(Some(PondStatement::AttachCatalog { name, uri: uri.clone(), options, if_not_exists }))
}

fn is_catalog_type(ty: &str) -> bool {
    ["hive", "metastore", "glue", "dataproc"].iter().any(|t| ty.eq_ignore_ascii_case(t))
}

/// Classifies one statement. Returns an error for statements that are clearly
/// meant as Pond statements but are malformed (e.g. `CREATE DATABASE` without a name).
pub fn classify(statement: &str) -> Result<Statement> {
    let t = tokenize(statement);
    let w = |i: usize, s: &str| is_word(t.get(i), s);
    let syntax = |what: &str| Error::InvalidRequest(format!("syntax error in '{}': expected {what}", statement.trim()));
    let end_at = |i: usize| t.len() == i || (t.len() == i + 1 && t[i] == Token::Symbol(';'));

    if w(0, "create") && w(1, "database") {
        let (if_not_exists, at) = if w(2, "if") && w(3, "not") && w(4, "exists") { (true, 5) } else { (false, 2) };
        let name = ident(t.get(at)).ok_or_else(|| syntax("CREATE DATABASE [IF NOT EXISTS] <name>"))?;
        if !end_at(at + 1) {
            return Err(syntax("nothing after the database name"));
        }
        return Ok(Statement::Pond(PondStatement::CreateDatabase { name, if_not_exists }));
    }
    if w(0, "drop") && w(1, "database") {
        let (if_exists, at) = if w(2, "if") && w(3, "exists") { (true, 4) } else { (false, 2) };
        let name = ident(t.get(at)).ok_or_else(|| syntax("DROP DATABASE [IF EXISTS] <name>"))?;
        if !end_at(at + 1) {
            return Err(syntax("nothing after the database name"));
        }
        return Ok(Statement::Pond(PondStatement::DropDatabase { name, if_exists }));
    }
    if w(0, "alter") && w(1, "database") {
        let from = ident(t.get(2)).ok_or_else(|| syntax("ALTER DATABASE <name> RENAME TO <new_name>"))?;
        if !(w(3, "rename") && w(4, "to")) {
            return Err(syntax("ALTER DATABASE <name> RENAME TO <new_name> (only RENAME is supported)"));
        }
        let to = ident(t.get(5)).ok_or_else(|| syntax("a new name after RENAME TO"))?;
        if !end_at(6) {
            return Err(syntax("nothing after the new name"));
        }
        return Ok(Statement::Pond(PondStatement::RenameDatabase { from, to }));
    }
    if w(0, "create") || w(0, "drop") || w(0, "show") {
        let bad = |e: pond_secrets::Error| Error::InvalidRequest(e.to_string());
        if let Some(c) = pond_secrets::parse_create_secret(statement) {
            return Ok(Statement::Pond(PondStatement::CreateSecret(c.map_err(bad)?)));
        }
        if let Some(d) = pond_secrets::parse_drop_secret(statement) {
            let (name, if_exists) = d.map_err(bad)?;
            return Ok(Statement::Pond(PondStatement::DropSecret { name, if_exists }));
        }
        if pond_secrets::is_show_secrets(statement) {
            return Ok(Statement::Pond(PondStatement::ShowSecrets));
        }
    }
    if pond_jobs::is_job_statement(statement) {
        return Ok(Statement::Pond(PondStatement::Job(statement.trim().to_string())));
    }
    if w(0, "attach") {
        if let Some(st) = classify_attach(&t, statement)? {
            return Ok(Statement::Pond(st));
        }
    }
    if w(0, "detach") {
        let mut at = if w(1, "database") { 2 } else { 1 };
        let if_exists = w(at, "if") && w(at + 1, "exists");
        if if_exists {
            at += 2;
        }
        let name = ident(t.get(at)).ok_or_else(|| syntax("DETACH [DATABASE] [IF EXISTS] <name>"))?;
        if end_at(at + 1) {
            return Ok(Statement::Pond(PondStatement::Detach { name, if_exists, text: statement.trim().to_string() }));
        }
    }
    if w(0, "refresh") && w(1, "catalog") {
        let name = ident(t.get(2)).ok_or_else(|| syntax("REFRESH CATALOG <catalog> [<database> [<table>]]"))?;
        let namespace = ident(t.get(3));
        let table = namespace.as_ref().and_then(|_| ident(t.get(4)));
        let used = 3 + namespace.is_some() as usize + table.is_some() as usize;
        if !end_at(used) {
            return Err(syntax("REFRESH CATALOG <catalog> [<database> [<table>]]"));
        }
        return Ok(Statement::Pond(PondStatement::RefreshCatalog { name, namespace, table }));
    }
    if w(0, "backup") {
        let usage = "BACKUP [TO '<directory or s3://bucket/prefix>']";
        if end_at(1) {
            return Ok(Statement::Pond(PondStatement::Backup { target: None }));
        }
        return match (w(1, "to"), t.get(2)) {
            (true, Some(Token::Str(target))) if end_at(3) => Ok(Statement::Pond(PondStatement::Backup { target: Some(target.clone()) })),
            _ => Err(syntax(usage)),
        };
    }
    if let Some(st) = classify_link(&t)? {
        return Ok(Statement::Pond(st));
    }
    if w(0, "show") && w(1, "databases") && end_at(2) {
        return Ok(Statement::Pond(PondStatement::ShowDatabases));
    }
    if w(0, "use") {
        let database = ident(t.get(1)).ok_or_else(|| syntax("USE <database>[.<schema>]"))?;
        if end_at(2) {
            return Ok(Statement::Pond(PondStatement::Use { database, schema: None }));
        }
        if t.get(2) == Some(&Token::Symbol('.')) {
            let schema = ident(t.get(3)).ok_or_else(|| syntax("a schema name after '.'"))?;
            if end_at(4) {
                return Ok(Statement::Pond(PondStatement::Use { database, schema: Some(schema) }));
            }
        }
        return Err(syntax("USE <database>[.<schema>]"));
    }
    if w(0, "show") && w(1, "tables") && end_at(2) {
        return Ok(Statement::Pond(PondStatement::ShowTables));
    }
    if let Some(p) = classify_security(&t)? {
        return Ok(Statement::Pond(p));
    }
    Ok(Statement::DuckDb(statement.to_string()))
}

/// `LINK / SYNC / UNLINK DATABASE`, `SHOW LINKS`. Errors never quote the
/// statement: it may hold a connection string with a password.
fn classify_link(t: &[Token]) -> Result<Option<PondStatement>> {
    let w = |i: usize, s: &str| is_word(t.get(i), s);
    let end_at = |i: usize| t.len() == i || (t.len() == i + 1 && t[i] == Token::Symbol(';'));
    let syntax = |what: &str| Error::InvalidRequest(format!("syntax error: expected {what}"));
    if w(0, "show") && w(1, "links") && end_at(2) {
        return Ok(Some(PondStatement::ShowLinks));
    }
    if w(0, "show") && w(1, "nodes") && end_at(2) {
        return Ok(Some(PondStatement::ShowNodes));
    }
    for (word, usage) in [("sync", "SYNC DATABASE <name>"), ("unlink", "UNLINK DATABASE <name>")] {
        if w(0, word) && w(1, "database") {
            let name = ident(t.get(2)).ok_or_else(|| syntax(usage))?;
            if !end_at(3) {
                return Err(syntax(usage));
            }
            return Ok(Some(if word == "sync" { PondStatement::SyncDatabase { name } } else { PondStatement::UnlinkDatabase { name } }));
        }
    }
    if !(w(0, "link") && w(1, "database")) {
        return Ok(None);
    }
    let usage =
        "LINK DATABASE <name> TO POSTGRES '<connection string>' | SECRET '<secret>' [(SCHEMAS '…', TABLES '…', MODE 'logical'|'triggers')]";
    let name = ident(t.get(2)).ok_or_else(|| syntax(usage))?;
    if !(w(3, "to") && (w(4, "postgres") || w(4, "postgresql"))) {
        return Err(syntax(usage));
    }
    let (source, mut i) = match t.get(5) {
        Some(Token::Str(s)) => (LinkSource::Connection(s.clone()), 6),
        Some(Token::Word(k)) if k.eq_ignore_ascii_case("secret") => match t.get(6) {
            Some(Token::Str(s)) | Some(Token::Word(s)) | Some(Token::Quoted(s)) => (LinkSource::Secret(s.to_ascii_lowercase()), 7),
            _ => return Err(syntax(usage)),
        },
        _ => return Err(syntax(usage)),
    };
    let mut options = std::collections::BTreeMap::new();
    if is_word(t.get(i), "with") {
        i += 1;
    }
    if t.get(i) == Some(&Token::Symbol('(')) {
        i += 1;
        loop {
            let Some(Token::Word(key)) = t.get(i) else { return Err(syntax(usage)) };
            let key = key.to_ascii_uppercase();
            let value = match t.get(i + 1) {
                Some(Token::Word(v)) | Some(Token::Str(v)) | Some(Token::Quoted(v)) => v.clone(),
                _ => return Err(syntax(&format!("a value after {key}"))),
            };
            if !["SCHEMAS", "TABLES", "MODE"].contains(&key.as_str()) {
                return Err(Error::InvalidRequest(format!("LINK DATABASE has no option {key} (options: SCHEMAS, TABLES, MODE)")));
            }
            options.insert(key, value);
            i += 2;
            match t.get(i) {
                Some(Token::Symbol(',')) => i += 1,
                Some(Token::Symbol(')')) => {
                    i += 1;
                    break;
                }
                _ => return Err(syntax(usage)),
            }
        }
    }
    if !end_at(i) {
        return Err(syntax(usage));
    }
    Ok(Some(PondStatement::LinkDatabase { name, source, options }))
}

/// Users and grants. Errors never quote the statement: it may hold a password.
fn classify_security(t: &[Token]) -> Result<Option<PondStatement>> {
    let w = |i: usize, s: &str| is_word(t.get(i), s);
    let syntax = |what: &str| Error::InvalidRequest(format!("syntax error: expected {what}"));
    let end_at = |i: usize| t.len() == i || (t.len() == i + 1 && t[i] == Token::Symbol(';'));
    let string = |i: usize| match t.get(i) {
        Some(Token::Str(s)) => Some(s.clone()),
        _ => None,
    };
    if w(0, "create") && w(1, "user") {
        let name = ident(t.get(2)).ok_or_else(|| syntax("CREATE USER <name> PASSWORD '<password>' [SUPERUSER]"))?;
        let at = if w(3, "with") { 4 } else { 3 };
        if !w(at, "password") {
            return Err(syntax("CREATE USER <name> PASSWORD '<password>' [SUPERUSER]"));
        }
        let password = string(at + 1).ok_or_else(|| syntax("a quoted password after PASSWORD"))?;
        let superuser = w(at + 2, "superuser");
        if !end_at(at + 2 + superuser as usize) {
            return Err(syntax("nothing after PASSWORD '…' [SUPERUSER]"));
        }
        return Ok(Some(PondStatement::CreateUser { name, password, superuser }));
    }
    if w(0, "alter") && w(1, "user") {
        let name = ident(t.get(2)).ok_or_else(|| syntax("ALTER USER <name> PASSWORD '…' | RENAME TO <new> | SUPERUSER | NOSUPERUSER"))?;
        let at = if w(3, "with") { 4 } else { 3 };
        if w(at, "password") {
            let password = string(at + 1).ok_or_else(|| syntax("a quoted password after PASSWORD"))?;
            if !end_at(at + 2) {
                return Err(syntax("nothing after the password"));
            }
            return Ok(Some(PondStatement::AlterUserPassword { name, password }));
        }
        if w(3, "rename") && w(4, "to") {
            let to = ident(t.get(5)).ok_or_else(|| syntax("a new name after RENAME TO"))?;
            if !end_at(6) {
                return Err(syntax("nothing after the new name"));
            }
            return Ok(Some(PondStatement::RenameUser { from: name, to }));
        }
        if (w(at, "superuser") || w(at, "nosuperuser")) && end_at(at + 1) {
            return Ok(Some(PondStatement::AlterUserSuperuser { name, superuser: w(at, "superuser") }));
        }
        return Err(syntax("ALTER USER <name> PASSWORD '…' | RENAME TO <new> | SUPERUSER | NOSUPERUSER"));
    }
    if w(0, "drop") && w(1, "user") {
        let (if_exists, at) = if w(2, "if") && w(3, "exists") { (true, 4) } else { (false, 2) };
        let name = ident(t.get(at)).ok_or_else(|| syntax("DROP USER [IF EXISTS] <name>"))?;
        if !end_at(at + 1) {
            return Err(syntax("nothing after the user name"));
        }
        return Ok(Some(PondStatement::DropUser { name, if_exists }));
    }
    if w(0, "create") && w(1, "role") {
        let name = ident(t.get(2)).ok_or_else(|| syntax("CREATE ROLE <name>"))?;
        if !end_at(3) {
            return Err(syntax("nothing after the role name"));
        }
        return Ok(Some(PondStatement::CreateRole { name }));
    }
    if w(0, "drop") && w(1, "role") {
        let (if_exists, at) = if w(2, "if") && w(3, "exists") { (true, 4) } else { (false, 2) };
        let name = ident(t.get(at)).ok_or_else(|| syntax("DROP ROLE [IF EXISTS] <name>"))?;
        if !end_at(at + 1) {
            return Err(syntax("nothing after the role name"));
        }
        return Ok(Some(PondStatement::DropRole { name, if_exists }));
    }
    if w(0, "show") && w(1, "users") && end_at(2) {
        return Ok(Some(PondStatement::ShowUsers));
    }
    if w(0, "show") && w(1, "grants") {
        if end_at(2) {
            return Ok(Some(PondStatement::ShowGrants { user: None }));
        }
        if w(2, "for") {
            let user = ident(t.get(3)).ok_or_else(|| syntax("SHOW GRANTS [FOR <user>]"))?;
            if end_at(4) {
                return Ok(Some(PondStatement::ShowGrants { user: Some(user) }));
            }
        }
        return Err(syntax("SHOW GRANTS [FOR <user>]"));
    }
    let revoke = w(0, "revoke");
    if !(w(0, "grant") || revoke) {
        return Ok(None);
    }
    let usage = if revoke {
        "REVOKE <privileges> ON DATABASE <db> | ON [TABLE] <db>.<schema>.<table> FROM <user>"
    } else {
        "GRANT <privileges> ON DATABASE <db> | ON [TABLE] <db>.<schema>.<table> TO <user>"
    };
    // Privilege list up to ON.
    let mut i = 1;
    let mut privileges = Vec::new();
    loop {
        match t.get(i) {
            Some(Token::Word(p)) if p != "on" => {
                if p == "all" && w(i + 1, "privileges") {
                    i += 1;
                }
                privileges.push(p.clone());
                i += 1;
            }
            _ => return Err(syntax(usage)),
        }
        if t.get(i) == Some(&Token::Symbol(',')) {
            i += 1;
            continue;
        }
        break;
    }
    // GRANT role TO member / REVOKE role FROM member.
    if privileges.len() == 1 && w(i, if revoke { "from" } else { "to" }) {
        let member = ident(t.get(i + 1)).ok_or_else(|| syntax(usage))?;
        if !end_at(i + 2) {
            return Err(syntax(usage));
        }
        return Ok(Some(PondStatement::GrantRole { revoke, role: privileges.remove(0), member }));
    }
    if !w(i, "on") {
        return Err(syntax(usage));
    }
    i += 1;
    let on = if w(i, "database") {
        let db = ident(t.get(i + 1)).ok_or_else(|| syntax(usage))?;
        i += 2;
        GrantOn::Database(db)
    } else {
        if w(i, "table") {
            i += 1;
        }
        let mut parts = vec![ident(t.get(i)).ok_or_else(|| syntax(usage))?];
        i += 1;
        while t.get(i) == Some(&Token::Symbol('.')) && parts.len() < 3 {
            parts.push(ident(t.get(i + 1)).ok_or_else(|| syntax(usage))?);
            i += 2;
        }
        GrantOn::Table(parts)
    };
    if !w(i, if revoke { "from" } else { "to" }) {
        return Err(syntax(usage));
    }
    let user = ident(t.get(i + 1)).ok_or_else(|| syntax(usage))?;
    if !end_at(i + 2) {
        return Err(syntax(usage));
    }
    Ok(Some(PondStatement::Grant { revoke, privileges, on, user }))
}

/// Splits and classifies a whole request.
pub fn parse(sql: &str) -> Result<Vec<Statement>> {
    split_statements(sql).iter().map(|s| classify(s)).collect()
}

/// Advances `i` past one identifier at `b[*i]`: double-quoted (with `""`
/// escapes) or plain (letters, digits, `_`, non-ASCII). False if none starts there.
pub(crate) fn skip_identifier(b: &[u8], i: &mut usize) -> bool {
    if *i < b.len() && b[*i] == b'"' {
        *i += 1;
        while *i < b.len() {
            if b[*i] == b'"' {
                if b.get(*i + 1) == Some(&b'"') {
                    *i += 2;
                    continue;
                }
                *i += 1;
                return true;
            }
            *i += 1;
        }
        false
    } else {
        let start = *i;
        while *i < b.len() && (b[*i].is_ascii_alphanumeric() || b[*i] == b'_' || b[*i] >= 0x80) {
            *i += 1;
        }
        *i > start
    }
}

/// Quotes an identifier for DuckDB.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal for DuckDB.
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_catalog_statements() {
        let st =
            classify("ATTACH 'thrift://h:9083,thrift://g:9083' AS Hive1 (TYPE hive, CACHE_TTL 0, TRANSPORT 'framed', READ_ONLY)").unwrap();
        let Statement::Pond(PondStatement::AttachCatalog { name, uri, options, if_not_exists }) = st else { panic!("{st:?}") };
        assert_eq!((name.as_str(), uri.as_str(), if_not_exists), ("hive1", "thrift://h:9083,thrift://g:9083", false));
        assert_eq!(options.get("TYPE").map(String::as_str), Some("hive"));
        assert_eq!(options.get("CACHE_TTL").map(String::as_str), Some("0"));
        assert_eq!(options.get("TRANSPORT").map(String::as_str), Some("framed"));
        assert_eq!(options.get("READ_ONLY").map(String::as_str), Some("true"));
        let st = classify("attach database if not exists 'thrift://h:1' x (type metastore, provider hive);").unwrap();
        assert!(matches!(st, Statement::Pond(PondStatement::AttachCatalog { if_not_exists: true, .. })), "{st:?}");
        for form in
            ["attach 'glue' as g (type glue, region 'eu-west-1')", "attach 'projects/p/locations/l/services/s' as d (type dataproc)"]
        {
            assert!(matches!(classify(form).unwrap(), Statement::Pond(PondStatement::AttachCatalog { .. })), "{form}");
        }
        // DuckDB's own ATTACH stays DuckDB's.
        assert!(matches!(classify("ATTACH 'f.duckdb' AS f (READ_ONLY)").unwrap(), Statement::DuckDb(_)));
        assert!(matches!(classify("ATTACH 'postgres:dbname=x' AS p (TYPE postgres)").unwrap(), Statement::DuckDb(_)));
        assert!(classify("ATTACH 'thrift://h:1' AS x (TYPE hive) extra").is_err());
        let st = classify("DETACH DATABASE IF EXISTS hive1").unwrap();
        assert!(matches!(st, Statement::Pond(PondStatement::Detach { ref name, if_exists: true, .. }) if name == "hive1"), "{st:?}");
        let st = classify("REFRESH CATALOG hive1 sales orders").unwrap();
        assert_eq!(
            st,
            Statement::Pond(PondStatement::RefreshCatalog {
                name: "hive1".into(),
                namespace: Some("sales".into()),
                table: Some("orders".into())
            })
        );
        assert!(classify("REFRESH CATALOG hive1 a b c").is_err());
    }

    #[test]
    fn link_statements_parse_and_never_echo_the_connection() {
        let st = classify("LINK DATABASE shop TO POSTGRES 'postgresql://u:hunter2@h/db' (SCHEMAS 'public,s2', MODE 'logical')").unwrap();
        let Statement::Pond(p @ PondStatement::LinkDatabase { name, source, options }) = &st else { panic!() };
        assert_eq!(name, "shop");
        assert_eq!(source, &LinkSource::Connection("postgresql://u:hunter2@h/db".into()));
        assert_eq!(options.get("SCHEMAS").map(String::as_str), Some("public,s2"));
        assert!(p.has_secret());
        assert!(!format!("{p:?}").contains("hunter2"));
        let st = classify("link database crm to postgres secret 'crm_pg'").unwrap();
        assert!(matches!(st, Statement::Pond(PondStatement::LinkDatabase { source: LinkSource::Secret(ref s), .. }) if s == "crm_pg"));
        assert_eq!(classify("SYNC DATABASE shop").unwrap(), Statement::Pond(PondStatement::SyncDatabase { name: "shop".into() }));
        assert_eq!(classify("backup to '/b/x';").unwrap(), Statement::Pond(PondStatement::Backup { target: Some("/b/x".into()) }));
        assert_eq!(classify("BACKUP").unwrap(), Statement::Pond(PondStatement::Backup { target: None }));
        assert!(classify("BACKUP TO somewhere").unwrap_err().to_string().contains("BACKUP [TO"));
        assert_eq!(classify("unlink database shop;").unwrap(), Statement::Pond(PondStatement::UnlinkDatabase { name: "shop".into() }));
        assert_eq!(classify("SHOW LINKS").unwrap(), Statement::Pond(PondStatement::ShowLinks));
        assert_eq!(classify("show nodes;").unwrap(), Statement::Pond(PondStatement::ShowNodes));
        let e = classify("LINK DATABASE shop TO POSTGRES 'postgresql://u:hunter2@h/db' (COLOR 'red')").unwrap_err().to_string();
        assert!(e.contains("COLOR") && !e.contains("hunter2"), "{e}");
        let e = classify("LINK DATABASE shop 'postgresql://u:hunter2@h/db'").unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn secret_statements_are_pond_statements_and_never_echoed() {
        let st = classify("CREATE SECRET s3c (TYPE s3, KEY_ID 'AKIA', SECRET 'very-secret')").unwrap();
        let Statement::Pond(p @ PondStatement::CreateSecret(_)) = &st else { panic!("{st:?}") };
        assert!(p.has_secret());
        assert!(!format!("{p:?}").contains("very-secret"));
        assert!(matches!(
            classify("DROP SECRET IF EXISTS s3c").unwrap(),
            Statement::Pond(PondStatement::DropSecret { if_exists: true, .. })
        ));
        assert_eq!(classify("SHOW SECRETS").unwrap(), Statement::Pond(PondStatement::ShowSecrets));
        let e = classify("CREATE SECRET x (TYPE s3, KEY_ID 'a', SECRET 'hunter2'").unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn splits_respecting_quotes_and_comments() {
        let s = split_statements("select 'a;b'; select \"x;y\" from t -- c;\n; /* ; */ select $$;$$; select E'\\';'; ;  ");
        assert_eq!(s, vec!["select 'a;b'", "select \"x;y\" from t -- c;", "/* ; */ select $$;$$", "select E'\\';'"]);
    }

    #[test]
    fn carriage_return_ends_a_line_comment() {
        assert_eq!(split_statements("SET TimeZone = 'UTC' --\r; SELECT 2"), vec!["SET TimeZone = 'UTC' --", "SELECT 2"]);
    }

    #[test]
    fn dollar_parameters_are_not_quotes() {
        assert_eq!(split_statements("select $1; select $2"), vec!["select $1", "select $2"]);
        assert_eq!(split_statements("select $a$x;y$a$ ; select 1").len(), 2);
    }

    #[test]
    fn comment_only_statements_vanish() {
        assert!(split_statements("-- nothing\n ; /* nope */").is_empty());
    }

    #[test]
    fn recognises_pond_statements() {
        use PondStatement::*;
        let p = |s: &str| match classify(s).unwrap() {
            Statement::Pond(p) => Some(p),
            Statement::DuckDb(_) => None,
        };
        assert_eq!(p("CREATE DATABASE Sales"), Some(CreateDatabase { name: "sales".into(), if_not_exists: false }));
        assert_eq!(p("create database if not exists \"Mixed\""), Some(CreateDatabase { name: "Mixed".into(), if_not_exists: true }));
        assert_eq!(p("DROP DATABASE IF EXISTS a;"), Some(DropDatabase { name: "a".into(), if_exists: true }));
        assert_eq!(p("ALTER DATABASE a RENAME TO b"), Some(RenameDatabase { from: "a".into(), to: "b".into() }));
        assert_eq!(p("show databases"), Some(ShowDatabases));
        assert_eq!(p("USE default"), Some(Use { database: "default".into(), schema: None }));
        assert_eq!(p("use db.s"), Some(Use { database: "db".into(), schema: Some("s".into()) }));
        assert_eq!(p("SELECT 1"), None);
        assert_eq!(p("CREATE TABLE database(a int)"), None);
        assert!(classify("CREATE DATABASE").is_err());
        assert!(classify("ALTER DATABASE a SET x").is_err());
        assert!(classify("CREATE DATABASE a b").is_err());
    }

    #[test]
    fn recognises_user_and_grant_statements() {
        use PondStatement::*;
        let p = |s: &str| match classify(s).unwrap() {
            Statement::Pond(p) => Some(p),
            Statement::DuckDb(_) => None,
        };
        assert_eq!(
            p("CREATE USER alice PASSWORD 'it''s secret'"),
            Some(CreateUser { name: "alice".into(), password: "it's secret".into(), superuser: false })
        );
        assert_eq!(
            p("create user \"Bob\" with password 'x;y' superuser;"),
            Some(CreateUser { name: "Bob".into(), password: "x;y".into(), superuser: true })
        );
        assert_eq!(p("ALTER USER alice PASSWORD 'n'"), Some(AlterUserPassword { name: "alice".into(), password: "n".into() }));
        assert_eq!(p("ALTER USER alice RENAME TO alicia"), Some(RenameUser { from: "alice".into(), to: "alicia".into() }));
        assert_eq!(p("alter user alice nosuperuser"), Some(AlterUserSuperuser { name: "alice".into(), superuser: false }));
        assert_eq!(p("DROP USER IF EXISTS alice"), Some(DropUser { name: "alice".into(), if_exists: true }));
        assert_eq!(
            p("GRANT READ, WRITE ON DATABASE sales TO alice"),
            Some(Grant {
                revoke: false,
                privileges: vec!["read".into(), "write".into()],
                on: GrantOn::Database("sales".into()),
                user: "alice".into()
            })
        );
        assert_eq!(
            p("grant select, insert on table sales.main.orders to alice"),
            Some(Grant {
                revoke: false,
                privileges: vec!["select".into(), "insert".into()],
                on: GrantOn::Table(vec!["sales".into(), "main".into(), "orders".into()]),
                user: "alice".into()
            })
        );
        assert_eq!(
            p("REVOKE ALL PRIVILEGES ON orders FROM alice"),
            Some(Grant { revoke: true, privileges: vec!["all".into()], on: GrantOn::Table(vec!["orders".into()]), user: "alice".into() })
        );
        assert_eq!(p("SHOW USERS"), Some(ShowUsers));
        assert_eq!(p("CREATE ROLE analysts"), Some(CreateRole { name: "analysts".into() }));
        assert_eq!(p("DROP ROLE IF EXISTS analysts"), Some(DropRole { name: "analysts".into(), if_exists: true }));
        assert_eq!(p("GRANT analysts TO alice"), Some(GrantRole { revoke: false, role: "analysts".into(), member: "alice".into() }));
        assert_eq!(p("REVOKE analysts FROM alice"), Some(GrantRole { revoke: true, role: "analysts".into(), member: "alice".into() }));
        assert_eq!(p("SHOW GRANTS FOR alice"), Some(ShowGrants { user: Some("alice".into()) }));
        assert_eq!(p("show tables"), Some(ShowTables));
        assert_eq!(p("SHOW TABLES FROM x"), None);
        // Malformed user statements fail without echoing the password.
        let e = classify("CREATE USER a PASSWORD 'topsecret' EXTRA").unwrap_err().to_string();
        assert!(!e.contains("topsecret"), "{e}");
        assert!(classify("GRANT READ ON DATABASE d alice").is_err());
        assert!(classify("GRANT ON DATABASE d TO alice").is_err());
    }
}
