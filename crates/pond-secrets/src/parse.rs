//! The SQL surface of secrets, as pure functions over the statement text:
//! `CREATE [OR REPLACE] [PERSISTENT] SECRET [IF NOT EXISTS] name (TYPE t, OPTION value, …)`,
//! `DROP [PERSISTENT] SECRET [IF EXISTS] name` and `SHOW SECRETS`.
//!
//! A small hand-written tokenizer: words, 'single-quoted strings' ('' escapes a
//! quote), "double-quoted names", punctuation, `--` and `/* */` comments. It
//! only reads as far as it must to tell whether a text is one of these
//! statements, so other statements are never rejected here. Error messages
//! never repeat option values.

use std::collections::BTreeMap;

use crate::normalize::{allowed_options, is_sensitive, normalize_name, SECRET_TYPES};
use crate::redact::REDACTED;
use crate::{Error, Result};

const CREATE_SYNTAX: &str = "CREATE [OR REPLACE] SECRET [IF NOT EXISTS] name (TYPE s3|aws|gcp|postgres, OPTION 'value', …)";
const DROP_SYNTAX: &str = "DROP SECRET [IF EXISTS] name";

/// A parsed `CREATE SECRET`. The options are as written (names upper-cased,
/// values unquoted) and not yet validated: [`SecretStore::create`](crate::SecretStore::create)
/// validates them with [`normalize`](crate::normalize). `Debug` never shows values.
#[derive(Clone, PartialEq, Eq)]
pub struct CreateSecret {
    /// Lower-cased.
    pub name: String,
    /// Lower-cased, as written after `TYPE`.
    pub secret_type: String,
    /// Upper-cased option names (without `TYPE`) → values.
    pub options: BTreeMap<String, String>,
    pub or_replace: bool,
    pub if_not_exists: bool,
}

impl std::fmt::Debug for CreateSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateSecret")
            .field("name", &self.name)
            .field("secret_type", &self.secret_type)
            .field("options", &self.options.keys().collect::<Vec<_>>())
            .field("or_replace", &self.or_replace)
            .field("if_not_exists", &self.if_not_exists)
            .finish()
    }
}

/// `None` when `sql` is not a `CREATE … SECRET` statement; otherwise the parsed
/// statement or a syntax error. `CREATE TEMPORARY SECRET` is an error: Pond's
/// secrets are always persistent.
pub fn parse_create_secret(sql: &str) -> Option<Result<CreateSecret>> {
    let mut lx = Lexer::new(sql);
    let header = create_header(&mut lx)?;
    let syntax = |message: String| Error::Syntax(format!("CREATE SECRET: {message} (syntax: {CREATE_SYNTAX})"));
    Some(create_body(&mut lx, header).map_err(syntax))
}

/// `None` when `sql` is not a `DROP … SECRET` statement; otherwise the secret
/// name (lower-cased) and whether `IF EXISTS` was given, or a syntax error.
pub fn parse_drop_secret(sql: &str) -> Option<Result<(String, bool)>> {
    let mut lx = Lexer::new(sql);
    if !lx.eat_keyword("DROP") {
        return None;
    }
    let temporary = if lx.eat_keyword("PERSISTENT") { false } else { lx.eat_keyword("TEMPORARY") || lx.eat_keyword("TEMP") };
    if !lx.eat_keyword("SECRET") {
        return None;
    }
    let syntax = |message: String| Error::Syntax(format!("DROP SECRET: {message} (syntax: {DROP_SYNTAX})"));
    Some(drop_body(&mut lx, temporary).map_err(syntax))
}

/// Whether `sql` is `SHOW SECRETS` (any case, optional `;`).
pub fn is_show_secrets(sql: &str) -> bool {
    let mut lx = Lexer::new(sql);
    if !(lx.eat_keyword("SHOW") && lx.eat_keyword("SECRETS")) {
        return false;
    }
    lx.eat_punct(';');
    lx.at_end()
}

/// The text of a statement as it may be logged or audited: for a
/// `CREATE SECRET`, every option value is replaced by `'<redacted>'` except
/// `TYPE` and the known non-sensitive options (`KEY_ID`, `REGION`, `HOST`, …);
/// if the statement does not parse, everything after `SECRET` is replaced.
/// Other statements are returned unchanged.
pub fn redact_sql(sql: &str) -> String {
    let mut lx = Lexer::new(sql);
    if create_header(&mut lx).is_none() {
        return sql.to_string();
    }
    let header_end = lx.pos;
    redact_options(sql, lx).unwrap_or_else(|| format!("{} {REDACTED}", &sql[..header_end]))
}

fn redact_options(sql: &str, mut lx: Lexer<'_>) -> Option<String> {
    let known_plain = |name: &str| {
        name == "TYPE" || (!is_sensitive(name) && SECRET_TYPES.iter().any(|t| allowed_options(t).unwrap_or_default().contains(&name)))
    };
    let mut out = String::new();
    let mut copied = 0;
    // Up to the option list; a quoted string before it is not a name.
    loop {
        match lx.next().ok()? {
            (Tok::Punct('('), ..) => break,
            (Tok::Word(_) | Tok::Ident(_), ..) => {}
            _ => return None,
        }
    }
    loop {
        let (name, ..) = lx.next().ok()?;
        let name = match name {
            Tok::Word(w) => w.to_ascii_uppercase(),
            Tok::Punct(')') => break,
            _ => return None,
        };
        let (value, start, end) = lx.next().ok()?;
        if !matches!(value, Tok::Word(_) | Tok::Quoted(_)) {
            return None;
        }
        if !known_plain(&name) {
            out.push_str(&sql[copied..start]);
            out.push_str(&format!("'{REDACTED}'"));
            copied = end;
        }
        match lx.next().ok()? {
            (Tok::Punct(','), ..) => {}
            (Tok::Punct(')'), ..) => break,
            _ => return None,
        }
    }
    // Only an optional ';' may follow.
    lx.eat_punct(';');
    if !lx.at_end() {
        return None;
    }
    out.push_str(&sql[copied..]);
    Some(out)
}

struct CreateHeader {
    or_replace: bool,
    temporary: bool,
}

/// `CREATE [OR REPLACE] [PERSISTENT|TEMPORARY] SECRET`, or `None`.
fn create_header(lx: &mut Lexer<'_>) -> Option<CreateHeader> {
    if !lx.eat_keyword("CREATE") {
        return None;
    }
    let or_replace = lx.eat_keyword("OR");
    if or_replace && !lx.eat_keyword("REPLACE") {
        return None;
    }
    let temporary = if lx.eat_keyword("PERSISTENT") { false } else { lx.eat_keyword("TEMPORARY") || lx.eat_keyword("TEMP") };
    lx.eat_keyword("SECRET").then_some(CreateHeader { or_replace, temporary })
}

fn create_body(lx: &mut Lexer<'_>, header: CreateHeader) -> Result<CreateSecret, String> {
    if header.temporary {
        return Err("Pond's secrets are always persistent (sealed in Pond's metadata): leave out TEMPORARY".into());
    }
    let if_not_exists = if lx.peek_keyword("IF") && lx.peek2_keyword("NOT") {
        lx.next()?;
        lx.next()?;
        if !lx.eat_keyword("EXISTS") {
            return Err("expected EXISTS after IF NOT".into());
        }
        true
    } else {
        false
    };
    if header.or_replace && if_not_exists {
        return Err("OR REPLACE and IF NOT EXISTS cannot be combined".into());
    }
    let name = match lx.next()?.0 {
        Tok::Word(w) | Tok::Ident(w) => normalize_name(&w).map_err(|e| e.to_string())?,
        Tok::Punct('(') => return Err("the secret needs a name, as in CREATE SECRET s3_prod (TYPE s3, …)".into()),
        other => return Err(format!("expected the secret's name, found {}", other.describe())),
    };
    if lx.peek_keyword("IN") {
        return Err("IN <storage> is not supported: Pond keeps every secret in its own metadata".into());
    }
    match lx.next()?.0 {
        Tok::Punct('(') => {}
        other => return Err(format!("expected '(' and the options after the secret name, found {}", other.describe())),
    }
    let mut secret_type = None;
    let mut options = BTreeMap::new();
    let mut first = true;
    loop {
        let option = match lx.next()?.0 {
            Tok::Word(w) => w.to_ascii_uppercase(),
            Tok::Punct(')') if first => break,
            Tok::End => return Err("the option list is not closed with ')'".into()),
            other => return Err(format!("expected an option name, found {}", other.describe())),
        };
        first = false;
        let value = match lx.next()?.0 {
            Tok::Quoted(s) | Tok::Word(s) => s,
            Tok::Punct(',' | ')') | Tok::End => return Err(format!("option {option} has no value")),
            Tok::Ident(_) => return Err(format!("the value of option {option} is in double quotes: write values in single quotes")),
            Tok::Punct(_) => {
                return Err(format!("expected a value for option {option}: a 'quoted string', a number or a word"));
            }
        };
        if option == "TYPE" {
            if secret_type.is_some() {
                return Err("TYPE is given twice".into());
            }
            secret_type = Some(value.to_ascii_lowercase());
        } else if options.insert(option.clone(), value).is_some() {
            return Err(format!("option {option} is given twice"));
        }
        match lx.next()?.0 {
            Tok::Punct(',') => {}
            Tok::Punct(')') => break,
            Tok::End => return Err("the option list is not closed with ')'".into()),
            _ => {
                return Err(format!(
                "expected ',' or ')' after the value of option {option} (quote values that contain spaces or punctuation: {option} 'a b')"
            ))
            }
        }
    }
    lx.eat_punct(';');
    if !lx.at_end() {
        return Err("unexpected text after the option list".into());
    }
    let secret_type = secret_type.ok_or_else(|| format!("TYPE is missing: give one of {} in the option list", SECRET_TYPES.join(", ")))?;
    Ok(CreateSecret { name, secret_type, options, or_replace: header.or_replace, if_not_exists })
}

fn drop_body(lx: &mut Lexer<'_>, temporary: bool) -> Result<(String, bool), String> {
    if temporary {
        return Err("Pond's secrets are always persistent: leave out TEMPORARY".into());
    }
    let if_exists = lx.peek_keyword("IF") && lx.peek2_keyword("EXISTS");
    if if_exists {
        lx.next()?;
        lx.next()?;
    }
    let name = match lx.next()?.0 {
        Tok::Word(w) | Tok::Ident(w) => normalize_name(&w).map_err(|e| e.to_string())?,
        other => return Err(format!("expected the secret's name, found {}", other.describe())),
    };
    if lx.peek_keyword("FROM") {
        return Err("FROM <storage> is not supported: Pond keeps every secret in its own metadata".into());
    }
    lx.eat_punct(';');
    if !lx.at_end() {
        return Err("unexpected text after the secret name".into());
    }
    Ok((name, if_exists))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// A bare word: letters, digits, `_`, and `.`/`-` between them (`1.5`, `us-east-1`).
    Word(String),
    /// A 'single-quoted' string, unescaped.
    Quoted(String),
    /// A "double-quoted" identifier, unescaped.
    Ident(String),
    Punct(char),
    End,
}

impl Tok {
    /// For error messages: words and punctuation as written, strings never.
    fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("'{w}'"),
            Tok::Quoted(_) => "a quoted string".into(),
            Tok::Ident(s) => format!("\"{s}\""),
            Tok::Punct(c) => format!("'{c}'"),
            Tok::End => "the end of the statement".into(),
        }
    }
}

#[derive(Clone)]
struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn new(src: &'a str) -> Self {
        Self { src, pos: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn skip_space(&mut self) -> Result<(), String> {
        loop {
            let rest = self.rest();
            let trimmed = rest.trim_start();
            self.pos += rest.len() - trimmed.len();
            if trimmed.starts_with("--") {
                self.pos += trimmed.find('\n').unwrap_or(trimmed.len());
            } else if let Some(body) = trimmed.strip_prefix("/*") {
                let end = body.find("*/").ok_or("unterminated /* comment")?;
                self.pos += 2 + end + 2;
            } else {
                return Ok(());
            }
        }
    }

    /// The next token with its byte span in the source.
    fn next(&mut self) -> Result<(Tok, usize, usize), String> {
        self.skip_space()?;
        let start = self.pos;
        let rest = self.rest();
        let Some(c) = rest.chars().next() else { return Ok((Tok::End, start, start)) };
        let tok = if c == '\'' || c == '"' {
            let (text, len) = quoted(rest, c).ok_or(if c == '\'' { "unterminated quoted string" } else { "unterminated quoted name" })?;
            self.pos += len;
            if c == '\'' {
                Tok::Quoted(text)
            } else {
                Tok::Ident(text)
            }
        } else if is_word_char(c) || (c == '-' && rest[1..].starts_with(|d: char| d.is_ascii_digit())) {
            let mut len = c.len_utf8();
            let mut chars = rest[len..].chars().peekable();
            while let Some(ch) = chars.next() {
                let joins = (ch == '.' || ch == '-') && chars.peek().is_some_and(|&n| is_word_char(n));
                if is_word_char(ch) || joins {
                    len += ch.len_utf8();
                } else {
                    break;
                }
            }
            self.pos += len;
            Tok::Word(rest[..len].to_string())
        } else {
            self.pos += c.len_utf8();
            Tok::Punct(c)
        };
        Ok((tok, start, self.pos))
    }

    fn peek_keyword(&self, keyword: &str) -> bool {
        matches!(self.clone().next(), Ok((Tok::Word(w), ..)) if w.eq_ignore_ascii_case(keyword))
    }

    fn peek2_keyword(&self, keyword: &str) -> bool {
        let mut ahead = self.clone();
        ahead.next().is_ok() && ahead.peek_keyword(keyword)
    }

    /// Consumes the next token if it is `keyword` (any case).
    fn eat_keyword(&mut self, keyword: &str) -> bool {
        let found = self.peek_keyword(keyword);
        if found {
            let _ = self.next();
        }
        found
    }

    fn eat_punct(&mut self, p: char) -> bool {
        let mut ahead = self.clone();
        let found = matches!(ahead.next(), Ok((Tok::Punct(c), ..)) if c == p);
        if found {
            *self = ahead;
        }
        found
    }

    fn at_end(&self) -> bool {
        matches!(self.clone().next(), Ok((Tok::End, ..)))
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// A string quoted with `q` at the start of `text` (a doubled `q` stands for one):
/// its content and the length consumed, or `None` if it is not closed.
fn quoted(text: &str, q: char) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut chars = text.char_indices().skip(1).peekable();
    while let Some((i, c)) = chars.next() {
        if c == q {
            if chars.peek().is_some_and(|&(_, n)| n == q) {
                out.push(q);
                chars.next();
            } else {
                return Some((out, i + c.len_utf8()));
            }
        } else {
            out.push(c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(sql: &str) -> CreateSecret {
        parse_create_secret(sql).expect("a CREATE SECRET").expect("parses")
    }

    fn create_err(sql: &str) -> String {
        parse_create_secret(sql).expect("a CREATE SECRET").expect_err("fails").to_string()
    }

    #[test]
    fn create_with_quotes_escapes_and_bare_values() {
        let c =
            create("CREATE SECRET S3_Prod (TYPE S3, KEY_ID 'AKIA', secret 'it''s \"x\", (y)', USE_SSL false, port 9000, REGION us-east-1)");
        assert_eq!(c.name, "s3_prod");
        assert_eq!(c.secret_type, "s3");
        assert!(!c.or_replace && !c.if_not_exists);
        assert_eq!(c.options["KEY_ID"], "AKIA");
        assert_eq!(c.options["SECRET"], "it's \"x\", (y)");
        assert_eq!(c.options["USE_SSL"], "false");
        assert_eq!(c.options["PORT"], "9000");
        assert_eq!(c.options["REGION"], "us-east-1");
        assert!(!c.options.contains_key("TYPE"));
        assert!(!format!("{c:?}").contains("AKIA"));
    }

    #[test]
    fn create_variants() {
        let c = create("create or replace persistent secret x (type gcp, service_account_file '/a.json');");
        assert!(c.or_replace);
        assert_eq!(c.secret_type, "gcp");
        let c = create("  -- comment\n CREATE /* c */ SECRET IF NOT EXISTS \"My_Secret\" ( TYPE 'postgres' , HOST 'h' )  ; ");
        assert!(c.if_not_exists);
        assert_eq!(c.name, "my_secret");
        assert_eq!(c.secret_type, "postgres");
        // A secret may be called "if".
        assert_eq!(create("CREATE SECRET if (TYPE s3)").name, "if");
        assert!(create("CREATE SECRET e (TYPE s3, ENDPOINT '', PORT -1)").options["PORT"] == "-1");
    }

    #[test]
    fn other_statements_are_not_create_secret() {
        for sql in [
            "CREATE TABLE secret (a int)",
            "CREATE OR REPLACE VIEW v AS SELECT 'x",
            "CREATE TEMP TABLE t (a int)",
            "SELECT * FROM secret",
            "CREATE SECRETS",
            "",
            "DROP SECRET x",
        ] {
            assert!(parse_create_secret(sql).is_none(), "{sql}");
        }
    }

    #[test]
    fn bad_syntax_is_a_clear_error() {
        let cases = [
            ("CREATE SECRET (TYPE s3)", "needs a name"),
            ("CREATE SECRET x TYPE s3", "expected '('"),
            ("CREATE SECRET x (KEY_ID 'a')", "TYPE is missing"),
            ("CREATE SECRET x ()", "TYPE is missing"),
            ("CREATE SECRET x (TYPE s3, KEY_ID)", "KEY_ID has no value"),
            ("CREATE SECRET x (TYPE s3, KEY_ID 'a', KEY_ID 'b')", "given twice"),
            ("CREATE SECRET x (TYPE s3, TYPE aws)", "TYPE is given twice"),
            ("CREATE SECRET x (TYPE s3, SECRET 'abc", "unterminated quoted string"),
            ("CREATE SECRET x (TYPE s3, SECRET 'a'", "not closed"),
            ("CREATE SECRET x (TYPE s3,)", "expected an option name"),
            ("CREATE SECRET x (TYPE s3) extra", "unexpected text"),
            ("CREATE SECRET bad-name (TYPE s3)", "invalid secret name 'bad-name'"),
            ("CREATE SECRET 1x (TYPE s3)", "invalid secret name '1x'"),
            ("CREATE OR REPLACE SECRET IF NOT EXISTS x (TYPE s3)", "cannot be combined"),
            ("CREATE TEMPORARY SECRET x (TYPE s3)", "always persistent"),
            ("CREATE SECRET x IN motherduck (TYPE s3)", "IN <storage>"),
            ("CREATE SECRET x (TYPE s3, SECRET \"v\")", "single quotes"),
        ];
        for (sql, expected) in cases {
            let err = create_err(sql);
            assert!(err.contains(expected), "{sql}: {err}");
            assert!(err.starts_with("CREATE SECRET: ") && err.contains("syntax: CREATE"), "{err}");
        }
    }

    #[test]
    fn syntax_errors_never_repeat_values() {
        for sql in [
            "CREATE SECRET x (TYPE s3, SECRET hunter2 hunter3)",
            "CREATE SECRET x (TYPE s3, SECRET 'hunter2' 'hunter3')",
            "CREATE SECRET x (TYPE s3, SECRET 'hunter2', 'hunter3')",
            "CREATE SECRET x (TYPE s3, SECRET hunter2$hunter3)",
        ] {
            let err = create_err(sql);
            assert!(!err.contains("hunter"), "{sql}: {err}");
        }
    }

    #[test]
    fn drop_secret() {
        assert_eq!(parse_drop_secret("DROP SECRET S3_Prod").unwrap().unwrap(), ("s3_prod".into(), false));
        assert_eq!(parse_drop_secret("drop persistent secret if exists x;").unwrap().unwrap(), ("x".into(), true));
        assert_eq!(parse_drop_secret("DROP SECRET if").unwrap().unwrap(), ("if".into(), false));
        assert!(parse_drop_secret("DROP TABLE secret").is_none());
        assert!(parse_drop_secret("CREATE SECRET x (TYPE s3)").is_none());
        for (sql, expected) in [
            ("DROP SECRET", "expected the secret's name"),
            ("DROP SECRET a b", "unexpected text"),
            ("DROP SECRET x FROM local_file", "FROM <storage>"),
            ("DROP TEMPORARY SECRET x", "always persistent"),
        ] {
            let err = parse_drop_secret(sql).unwrap().unwrap_err().to_string();
            assert!(err.contains(expected) && err.starts_with("DROP SECRET: "), "{sql}: {err}");
        }
    }

    #[test]
    fn show_secrets() {
        assert!(is_show_secrets("SHOW SECRETS"));
        assert!(is_show_secrets(" show secrets ; "));
        assert!(!is_show_secrets("SHOW SECRETS x"));
        assert!(!is_show_secrets("SHOW TABLES"));
        assert!(!is_show_secrets("SELECT 'SHOW SECRETS'"));
    }

    #[test]
    fn redacted_sql_keeps_structure_and_harmless_options() {
        let sql = "CREATE SECRET s (TYPE s3, KEY_ID 'AKIA', SECRET 'it''s', SESSION_TOKEN tok, SECRT 'typo', REGION eu)";
        assert_eq!(
            redact_sql(sql),
            "CREATE SECRET s (TYPE s3, KEY_ID 'AKIA', SECRET '<redacted>', SESSION_TOKEN '<redacted>', SECRT '<redacted>', REGION eu)"
        );
        assert_eq!(redact_sql("create or replace secret s (type s3, secret 'x'"), "create or replace secret <redacted>");
        assert_eq!(redact_sql("CREATE SECRET s TYPE s3 SECRET 'x'"), "CREATE SECRET <redacted>");
        assert_eq!(redact_sql("CREATE SECRET s (TYPE s3) SECRET 'x'"), "CREATE SECRET <redacted>");
        assert_eq!(redact_sql("SELECT 'not a secret'"), "SELECT 'not a secret'");
    }
}
