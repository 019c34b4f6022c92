//! PostgreSQL's system catalog (`pg_class`, `pg_attribute`, `pg_type`, …) as
//! psql, SQLAlchemy, pandas and BI tools query it.
//!
//! DuckDB's own `pg_catalog` views list every attached database (Pond's hidden
//! ones too), use DuckDB's type ids where PostgreSQL clients expect type OIDs,
//! and miss relations psql reads. So catalog queries do not go to the shared
//! instance at all: each is answered by a small private, in-memory DuckDB
//! ([`Scratch`], one per connection, external access disabled) holding a
//! PostgreSQL-shaped catalog built from [`pond_engine::introspect::CatalogFacts`]
//! — the engine's grant-filtered view of the connection's database. A query
//! there can only ever read what the caller may see, whatever it joins.
//!
//! What DuckDB cannot parse is rewritten first ([`translate`], on tokens, never
//! whole query texts):
//! - `pg_catalog.` qualifiers are dropped (the catalog lives in the scratch
//!   database's `main` schema, ahead of DuckDB's built-in `pg_catalog`);
//! - `OPERATOR(pg_catalog.~)` becomes `~`, and PostgreSQL's searching regex
//!   operators (`~`, `!~`, `~*`, `!~*`) become DuckDB's whole-string ones with
//!   the pattern wrapped in `.*(?: … ).*`;
//! - `COLLATE <name>` is dropped;
//! - `x::regclass` / `CAST(x AS regclass)` (and `regtype`, `regnamespace`)
//!   become `pond_reg*_name(x)` for column values (the name, as PostgreSQL
//!   prints them) or `pond_reg*_oid(x)` for literals and parameters (the OID,
//!   as PostgreSQL compares them);
//! - `current_user` / `session_user` become the caller's name;
//! - `json_build_object` / `json_build_array` become DuckDB's `json_object` / `json_array`;
//! - `generate_series(…) s` gets a column alias so `s` can be used as a value.
//!
//! Functions PostgreSQL clients call (`format_type`, `pg_get_constraintdef`,
//! `pg_table_is_visible`, `has_table_privilege`, `current_setting`, …) are
//! macros in the scratch database over the same catalog.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use duckdb::types::Value;
use parking_lot::Mutex;
use pond_engine::introspect::CatalogFacts;
use pond_engine::sql::{quote_ident, quote_literal};

use crate::error::{Error, Result};

/// Relations the scratch catalog provides.
const RELATIONS: &[&str] = &[
    "pg_class",
    "pg_namespace",
    "pg_attribute",
    "pg_type",
    "pg_constraint",
    "pg_index",
    "pg_database",
    "pg_roles",
    "pg_user",
    "pg_authid",
    "pg_auth_members",
    "pg_settings",
    "pg_attrdef",
    "pg_description",
    "pg_shdescription",
    "pg_am",
    "pg_tablespace",
    "pg_collation",
    "pg_inherits",
    "pg_policy",
    "pg_statistic_ext",
    "pg_publication",
    "pg_publication_namespace",
    "pg_publication_rel",
    "pg_trigger",
    "pg_rewrite",
    "pg_depend",
    "pg_sequence",
    "pg_sequences",
    "pg_enum",
    "pg_extension",
    "pg_opclass",
    "pg_proc",
    "pg_tables",
    "pg_views",
    "pg_matviews",
    "pg_indexes",
    "pg_range",
    "pg_foreign_table",
    "pg_partitioned_table",
    "pg_event_trigger",
    "pg_language",
    "pg_operator",
    "pg_cast",
    "pg_stat_activity",
];

/// Functions that make a statement a catalog query even without a catalog relation.
const FUNCTIONS: &[&str] = &[
    "format_type",
    "pg_get_userbyid",
    "pg_table_is_visible",
    "pg_type_is_visible",
    "has_table_privilege",
    "has_schema_privilege",
    "has_database_privilege",
    "has_column_privilege",
    "to_regtype",
    "to_regclass",
    "pg_get_expr",
    "pg_get_constraintdef",
    "pg_get_indexdef",
    "pg_get_viewdef",
    "obj_description",
    "col_description",
    "shobj_description",
    "pg_encoding_to_char",
    "current_schemas",
    "pg_backend_pid",
    "pg_is_in_recovery",
    "pg_postmaster_start_time",
];

// ----- tokens --------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Word,
    Quoted,
    Str,
    Num,
    Param,
    Op,
    Space,
}

#[derive(Debug, Clone)]
struct Tok {
    kind: Kind,
    text: String,
}

impl Tok {
    fn new(kind: Kind, text: impl Into<String>) -> Self {
        Self { kind, text: text.into() }
    }
    fn is_word(&self, w: &str) -> bool {
        matches!(self.kind, Kind::Word | Kind::Quoted) && self.name().eq_ignore_ascii_case(w)
    }
    fn is(&self, op: &str) -> bool {
        self.kind == Kind::Op && self.text == op
    }
    /// An identifier's name (quotes removed).
    fn name(&self) -> String {
        match self.kind {
            Kind::Quoted => {
                let inner = self.text.strip_prefix('"').unwrap_or(&self.text);
                inner.strip_suffix('"').unwrap_or(inner).replace("\"\"", "\"")
            }
            _ => self.text.clone(),
        }
    }
}

fn lex(sql: &str) -> Vec<Tok> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        let kind = if c.is_ascii_whitespace() {
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            Kind::Space
        } else if c == b'-' && b.get(i + 1) == Some(&b'-') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            Kind::Space
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                i += 1;
            }
            i = (i + 2).min(b.len());
            Kind::Space
        } else if c == b'\'' || ((c == b'E' || c == b'e') && b.get(i + 1) == Some(&b'\'')) {
            let escapes = c != b'\'';
            i += if escapes { 2 } else { 1 };
            while i < b.len() {
                if escapes && b[i] == b'\\' {
                    i += 2;
                    continue;
                }
                if b[i] == b'\'' {
                    if b.get(i + 1) == Some(&b'\'') {
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                i += 1;
            }
            Kind::Str
        } else if c == b'"' {
            i += 1;
            while i < b.len() {
                if b[i] == b'"' {
                    if b.get(i + 1) == Some(&b'"') {
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                i += 1;
            }
            Kind::Quoted
        } else if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$' || b[i] >= 0x80) {
                i += 1;
            }
            Kind::Word
        } else if c.is_ascii_digit() {
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                i += 1;
            }
            Kind::Num
        } else if c == b'$' && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
            i += 1;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            Kind::Param
        } else if b"~!*<>=|&+-/%^#@".contains(&c) {
            while i < b.len() && b"~!*<>=|&+-/%^#@".contains(&b[i]) {
                i += 1;
            }
            Kind::Op
        } else if c == b':' && b.get(i + 1) == Some(&b':') {
            i += 2;
            Kind::Op
        } else {
            // One character (parentheses, commas, dots, …), whole UTF-8 sequences.
            i += 1;
            while i < b.len() && !sql.is_char_boundary(i) {
                i += 1;
            }
            Kind::Op
        };
        // An escape at the very end may step past it.
        i = i.min(b.len());
        out.push(Tok::new(kind, &sql[start..i]));
    }
    out
}

fn join(toks: &[Tok]) -> String {
    toks.iter().map(|t| t.text.as_str()).collect()
}

/// Index of the next non-space token at or after `i`.
fn next(toks: &[Tok], mut i: usize) -> Option<usize> {
    while i < toks.len() {
        if toks[i].kind != Kind::Space {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Index of the previous non-space token before `i`.
fn prev(toks: &[Tok], i: usize) -> Option<usize> {
    (0..i).rev().find(|&j| toks[j].kind != Kind::Space)
}

/// The `)` matching the `(` at `open`.
fn matching(toks: &[Tok], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (j, t) in toks.iter().enumerate().skip(open) {
        if t.is("(") {
            depth += 1;
        } else if t.is(")") {
            depth -= 1;
            if depth == 0 {
                return Some(j);
            }
        }
    }
    None
}

/// Whether a SELECT-like statement reads PostgreSQL's catalog.
pub(crate) fn handles(sql: &str) -> bool {
    let toks = lex(sql);
    let Some(first) = next(&toks, 0) else { return false };
    let starts = ["select", "with", "values", "table"].iter().any(|w| toks[first].is_word(w)) || toks[first].is("(");
    if !starts {
        return false;
    }
    toks.iter().enumerate().any(|(i, t)| {
        if !matches!(t.kind, Kind::Word | Kind::Quoted) {
            return false;
        }
        let name = t.name().to_ascii_lowercase();
        if name == "pg_catalog"
            || RELATIONS.contains(&name.as_str())
            || ["regclass", "regtype", "regnamespace", "current_user", "session_user"].contains(&name.as_str())
        {
            return true;
        }
        // `current_setting('x')` of a PostgreSQL session parameter (DuckDB's settings are the engine's).
        if name == "current_setting" && t.kind == Kind::Word && !prev(&toks, i).is_some_and(|j| toks[j].is(".")) {
            let arg = next(&toks, i + 1).filter(|&o| toks[o].is("(")).and_then(|o| next(&toks, o + 1));
            if let Some(a) = arg.filter(|&a| toks[a].kind == Kind::Str) {
                let lit = toks[a].text.strip_prefix('\'').unwrap_or(&toks[a].text);
                if crate::local::is_pg_setting(lit.strip_suffix('\'').unwrap_or(lit)) {
                    return true;
                }
            }
        }
        // Functions count unqualified (`system.main.current_setting` is DuckDB's).
        FUNCTIONS.contains(&name.as_str())
            && next(&toks, i + 1).is_some_and(|j| toks[j].is("("))
            && !prev(&toks, i).is_some_and(|j| toks[j].is("."))
    })
}

/// Rewrites PostgreSQL idioms DuckDB cannot parse or answers differently (see the module docs).
pub(crate) fn translate(sql: &str, user: &str) -> String {
    let mut toks = lex(sql);
    // pg_catalog. qualifiers.
    let mut i = 0;
    while i < toks.len() {
        if toks[i].is_word("pg_catalog") {
            if let Some(dot) = next(&toks, i + 1).filter(|&d| toks[d].is(".")) {
                toks.drain(i..=dot);
                continue;
            }
        }
        i += 1;
    }
    // OPERATOR(~) → ~ ; COLLATE x → nothing; current_user → 'name'.
    let mut i = 0;
    while i < toks.len() {
        if toks[i].is_word("operator") {
            if let Some(open) = next(&toks, i + 1).filter(|&o| toks[o].is("(")) {
                if let Some(close) = matching(&toks, open) {
                    let inner: String = toks[open + 1..close].iter().filter(|t| t.kind != Kind::Space).map(|t| t.text.as_str()).collect();
                    toks.splice(i..=close, [Tok::new(Kind::Op, inner)]);
                    continue;
                }
            }
        }
        if toks[i].kind == Kind::Word && toks[i].is_word("collate") {
            if let Some(name) = next(&toks, i + 1).filter(|&n| matches!(toks[n].kind, Kind::Word | Kind::Quoted)) {
                toks.drain(i..=name);
                continue;
            }
        }
        // PostgreSQL's variadic JSON builders under DuckDB's names.
        for (pg, duck) in [("json_build_object", "json_object"), ("json_build_array", "json_array")] {
            if toks[i].kind == Kind::Word && toks[i].is_word(pg) && next(&toks, i + 1).is_some_and(|n| toks[n].is("(")) {
                toks[i] = Tok::new(Kind::Word, duck);
            }
        }
        if toks[i].kind == Kind::Word
            && (toks[i].is_word("current_user") || toks[i].is_word("session_user"))
            && !next(&toks, i + 1).is_some_and(|n| toks[n].is("("))
            && !prev(&toks, i).is_some_and(|p| toks[p].is("."))
        {
            toks[i] = Tok::new(Kind::Str, quote_literal(user));
        }
        i += 1;
    }
    regex_operators(&mut toks);
    ancestors_table(&mut toks);
    reg_casts(&mut toks);
    series_alias(&mut toks);
    join(&toks)
}

/// `a ~ 'p'` searches in PostgreSQL, matches the whole string in DuckDB.
fn regex_operators(toks: &mut [Tok]) {
    let mut i = 0;
    while i < toks.len() {
        let op = if toks[i].kind == Kind::Op { toks[i].text.clone() } else { String::new() };
        if matches!(op.as_str(), "~" | "!~" | "~*" | "!~*") {
            if let Some(rhs) = next(toks, i + 1).filter(|&r| matches!(toks[r].kind, Kind::Str | Kind::Param)) {
                let flags = if op.ends_with('*') { "(?is)" } else { "(?s)" };
                let operand = format!("('{flags}.*(?:' || {} || ').*')", toks[rhs].text);
                toks[rhs] = Tok::new(Kind::Op, operand);
                toks[i] = Tok::new(Kind::Op, op.trim_end_matches('*').to_string());
                i = rhs;
            }
        }
        i += 1;
    }
}

#[derive(Clone, Copy)]
enum Reg {
    Class,
    Type,
    Namespace,
}

fn reg_type(t: &Tok) -> Option<Reg> {
    if !matches!(t.kind, Kind::Word | Kind::Quoted) {
        return None;
    }
    match t.name().to_ascii_lowercase().as_str() {
        "regclass" => Some(Reg::Class),
        "regtype" => Some(Reg::Type),
        "regnamespace" => Some(Reg::Namespace),
        _ => None,
    }
}

fn reg_call(reg: Reg, operand: &[Tok]) -> Tok {
    let meaningful: Vec<&Tok> = operand.iter().filter(|t| t.kind != Kind::Space).collect();
    // Literals and parameters name an object (PostgreSQL compares them as OIDs);
    // column values are shown as names.
    let as_oid = matches!(meaningful.as_slice(), [t] if matches!(t.kind, Kind::Str | Kind::Num | Kind::Param));
    let kind = match reg {
        Reg::Class => "regclass",
        Reg::Type => "regtype",
        Reg::Namespace => "regnamespace",
    };
    let form = if as_oid { "oid" } else { "name" };
    Tok::new(Kind::Op, format!("pond_{kind}_{form}({})", join(operand).trim()))
}

/// `x::regclass` and `CAST(x AS regclass)` (innermost first).
fn reg_casts(toks: &mut Vec<Tok>) {
    for _ in 0..32 {
        let mut changed = false;
        // CAST( … AS reg*)
        let mut i = 0;
        while i < toks.len() {
            if toks[i].is_word("cast") {
                if let Some(open) = next(toks, i + 1).filter(|&o| toks[o].is("(")) {
                    if let Some(close) = matching(toks, open) {
                        let ty = prev(toks, close);
                        let as_kw = ty.and_then(|t| prev(toks, t));
                        if let (Some(ty), Some(as_kw)) = (ty, as_kw) {
                            if let (Some(reg), true) = (reg_type(&toks[ty]), toks[as_kw].is_word("as")) {
                                let inner = toks[open + 1..as_kw].to_vec();
                                // Innermost first: a reg cast inside is rewritten in an earlier round.
                                if !inner.iter().any(|t| reg_type(t).is_some()) {
                                    let call = reg_call(reg, &inner);
                                    toks.splice(i..=close, [call]);
                                    changed = true;
                                }
                            }
                        }
                    }
                }
            }
            i += 1;
        }
        // operand::reg*
        let mut i = 0;
        while i < toks.len() {
            if toks[i].is("::") {
                if let Some(ty) = next(toks, i + 1) {
                    if let Some(reg) = reg_type(&toks[ty]) {
                        if let Some(start) = operand_start(toks, i) {
                            let call = reg_call(reg, &toks[start..i]);
                            toks.splice(start..=ty, [call]);
                            changed = true;
                            i = start;
                        }
                    }
                }
            }
            i += 1;
        }
        if !changed {
            break;
        }
    }
}

/// Where the operand of a `::` cast at `cast` starts: a literal, a parameter,
/// a dotted name, a call or a parenthesized expression.
fn operand_start(toks: &[Tok], cast: usize) -> Option<usize> {
    let last = prev(toks, cast)?;
    let t = &toks[last];
    let mut start = match t.kind {
        Kind::Str | Kind::Num | Kind::Param => return Some(last),
        Kind::Word | Kind::Quoted => last,
        Kind::Op if t.is(")") => {
            // Find the matching `(` backwards.
            let mut depth = 0usize;
            let mut j = last;
            loop {
                if toks[j].is(")") {
                    depth += 1;
                } else if toks[j].is("(") {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                if j == 0 {
                    return None;
                }
                j -= 1;
            }
            match prev(toks, j) {
                Some(f) if toks[f].kind == Kind::Word && !is_keyword(&toks[f]) => f,
                _ => return Some(j),
            }
        }
        Kind::Op if t.kind == Kind::Op && t.text.starts_with("pond_") => last,
        _ => return None,
    };
    // Dotted names: a.b.c
    while let Some(dot) = prev(toks, start).filter(|&d| toks[d].is(".")) {
        match prev(toks, dot) {
            Some(q) if matches!(toks[q].kind, Kind::Word | Kind::Quoted) => start = q,
            _ => break,
        }
    }
    Some(start)
}

fn is_keyword(t: &Tok) -> bool {
    ["in", "and", "or", "not", "select", "where", "on", "when", "then", "else", "values", "exists", "any", "all", "as", "from", "by"]
        .iter()
        .any(|k| t.is_word(k))
}

/// `pg_partition_ancestors(r) WITH ORDINALITY` in FROM (psql's trigger listing):
/// a table that is not partitioned is its own only ancestor, at depth 1.
fn ancestors_table(toks: &mut Vec<Tok>) {
    let mut i = 0;
    while i < toks.len() {
        if toks[i].is_word("pg_partition_ancestors") {
            if let Some(open) = next(toks, i + 1).filter(|&o| toks[o].is("(")) {
                if let Some(close) = matching(toks, open) {
                    let with = next(toks, close + 1).filter(|&w| toks[w].is_word("with"));
                    let ord = with.and_then(|w| next(toks, w + 1)).filter(|&o| toks[o].is_word("ordinality"));
                    if let Some(ord) = ord {
                        let arg = join(&toks[open + 1..close]);
                        toks.splice(
                            i..=ord,
                            [Tok::new(Kind::Op, format!("(SELECT pond_regclass_oid({}) AS relid, 1 AS depth)", arg.trim()))],
                        );
                    }
                }
            }
        }
        i += 1;
    }
}

/// `FROM generate_series(a, b) s` names a value `s` in PostgreSQL; DuckDB needs `s(s)`.
fn series_alias(toks: &mut Vec<Tok>) {
    let mut i = 0;
    while i < toks.len() {
        if toks[i].is_word("generate_series") {
            if let Some(open) = next(toks, i + 1).filter(|&o| toks[o].is("(")) {
                if let Some(close) = matching(toks, open) {
                    let mut a = next(toks, close + 1);
                    if a.is_some_and(|a| toks[a].is_word("as")) {
                        a = a.and_then(|a| next(toks, a + 1));
                    }
                    if let Some(alias) = a.filter(|&a| toks[a].kind == Kind::Word && !is_keyword(&toks[a]) && !toks[a].is_word("with")) {
                        if !next(toks, alias + 1).is_some_and(|n| toks[n].is("(")) {
                            let name = toks[alias].text.clone();
                            toks.insert(alias + 1, Tok::new(Kind::Op, format!("({name})")));
                        }
                    }
                }
            }
        }
        i += 1;
    }
}

// ----- the scratch catalog -------------------------------------------------------------------

/// What a catalog answer depends on besides the engine's facts.
#[derive(Debug, Clone, Hash)]
pub(crate) struct Context {
    pub database: String,
    pub schema: String,
    pub user: String,
    pub server_version: String,
    pub pid: i32,
    /// The connection's PostgreSQL session parameters, sorted.
    pub settings: Vec<(String, String)>,
}

/// A connection's private catalog database, rebuilt when what it shows changed.
#[derive(Default)]
pub(crate) struct Scratch {
    db: Mutex<Option<(u64, duckdb::Connection)>>,
    /// Stops the running catalog query (time limit).
    interrupt: Mutex<Option<Arc<duckdb::InterruptHandle>>>,
    /// The engine's facts, kept while its catalog version and the database stay the same.
    facts: Mutex<Option<CachedFacts>>,
}

/// (engine catalog version, database, facts).
type CachedFacts = ((u64, u64), String, Arc<CatalogFacts>);

/// How long one catalog query may run before it is interrupted.
const TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// A catalog query's result.
pub(crate) struct Answer {
    pub schema: SchemaRef,
    pub types: Vec<String>,
    pub batches: Vec<RecordBatch>,
}

fn db_err(e: duckdb::Error) -> Error {
    let msg = e.to_string();
    // The scratch database has no file or network access: say so the way Pond's sandbox does.
    if msg.starts_with("Permission Error") {
        return Error::Catalog(format!("permission denied: {msg}"));
    }
    Error::Catalog(msg)
}

impl Scratch {
    /// Runs `sql` (already a catalog query) against the caller's catalog.
    /// `params`: bound values, or `None` to only describe the result (NULLs bound).
    pub(crate) async fn query(
        self: &Arc<Self>,
        session: &pond_engine::Session,
        engine: &pond_engine::Engine,
        ctx: Context,
        sql: &str,
        params: Option<Vec<Value>>,
        param_count: usize,
    ) -> Result<Answer> {
        let version = engine.catalog_version();
        let cached = self.facts.lock().as_ref().filter(|(v, db, _)| *v == version && *db == ctx.database).map(|(_, _, f)| f.clone());
        let facts = match cached {
            Some(f) => f,
            None => {
                let f = Arc::new(engine.catalog_facts(&session.identity, &ctx.database).await?);
                *self.facts.lock() = Some((version, ctx.database.clone(), f.clone()));
                f
            }
        };
        let text = translate(sql, &ctx.user);
        let me = self.clone();
        let mut work = tokio::task::spawn_blocking(move || me.run(&facts, &ctx, &text, params, param_count));
        let done = tokio::select! {
            r = &mut work => r,
            _ = tokio::time::sleep(TIME_LIMIT) => {
                if let Some(h) = self.interrupt.lock().as_ref() {
                    h.interrupt();
                }
                work.await
            }
        };
        done.map_err(|e| Error::Catalog(format!("catalog worker failed: {e}")))?
    }

    fn run(&self, facts: &CatalogFacts, ctx: &Context, sql: &str, params: Option<Vec<Value>>, param_count: usize) -> Result<Answer> {
        let script = data_script(facts, ctx);
        let mut h = DefaultHasher::new();
        script.hash(&mut h);
        let key = h.finish();
        let mut guard = self.db.lock();
        let fresh = !matches!(&*guard, Some((k, _)) if *k == key);
        if fresh {
            let conn = match guard.take() {
                Some((_, c)) => c,
                None => {
                    let c = open()?;
                    *self.interrupt.lock() = Some(c.interrupt_handle());
                    c
                }
            };
            conn.execute_batch(&script).map_err(db_err)?;
            *guard = Some((key, conn));
        }
        let Some((_, conn)) = guard.as_ref() else { return Err(Error::Catalog("catalog unavailable".into())) };
        let values = params.unwrap_or_else(|| vec![Value::Null; param_count]);
        let mut stmt = conn.prepare(sql).map_err(db_err)?;
        let arrow = stmt.query_arrow(duckdb::params_from_iter(values.iter())).map_err(db_err)?;
        let schema = arrow.get_schema();
        let batches: Vec<RecordBatch> = arrow.collect();
        let types = (0..schema.fields().len()).map(|i| pond_engine::params::logical_type_name(&stmt.column_logical_type(i))).collect();
        Ok(Answer { schema, types, batches })
    }
}

/// A new scratch database: in memory, no files, no extensions, one thread.
fn open() -> Result<duckdb::Connection> {
    let config = duckdb::Config::default()
        .enable_external_access(false)
        .and_then(|c| c.enable_autoload_extension(false))
        .and_then(|c| c.threads(1))
        .and_then(|c| c.max_memory("256MB"))
        .map_err(db_err)?;
    let conn = duckdb::Connection::open_in_memory_with_flags(config).map_err(db_err)?;
    conn.execute_batch(SCHEMA).map_err(db_err)?;
    conn.execute_batch("SET lock_configuration = true").map_err(db_err)?;
    Ok(conn)
}

fn lit(s: &str) -> String {
    quote_literal(s)
}

fn opt(s: &Option<String>) -> String {
    s.as_deref().map(quote_literal).unwrap_or_else(|| "NULL".into())
}

fn list(items: &[String]) -> String {
    format!("[{}]::VARCHAR[]", items.iter().map(|s| quote_literal(s)).collect::<Vec<_>>().join(", "))
}

fn insert(out: &mut String, table: &str, rows: Vec<String>) {
    out.push_str(&format!("DELETE FROM {table};\n"));
    for chunk in rows.chunks(500) {
        out.push_str(&format!("INSERT INTO {table} VALUES {};\n", chunk.join(", ")));
    }
}

/// The statements that load `facts` (and the connection's context) into the
/// scratch database's `pond_*` tables, which the pg_* views read.
fn data_script(facts: &CatalogFacts, ctx: &Context) -> String {
    let mut s = String::new();
    insert(
        &mut s,
        "pond_ctx",
        vec![format!(
            "({}, {}, {}, {}, {})",
            lit(&ctx.database),
            lit(&ctx.schema),
            lit(&ctx.user),
            lit(&format!("PostgreSQL {} on x86_64-pc-linux-gnu", ctx.server_version)),
            ctx.pid
        )],
    );
    insert(&mut s, "pond_settings", ctx.settings.iter().map(|(k, v)| format!("({}, {})", lit(k), lit(v))).collect());
    insert(&mut s, "pond_databases", facts.databases.iter().enumerate().map(|(i, d)| format!("({}, {})", 16384 + i, lit(d))).collect());
    insert(
        &mut s,
        "pond_users",
        facts.users.iter().enumerate().map(|(i, (u, sup))| format!("({}, {}, {})", 16384 + i, lit(u), sup)).collect(),
    );
    insert(&mut s, "pond_schemas", facts.schemas.iter().map(|n| format!("({}, {})", n.oid, lit(&n.name))).collect());
    insert(
        &mut s,
        "pond_rels",
        facts
            .relations
            .iter()
            .map(|r| format!("({}, {}, {}, {}, {}, {})", r.oid, r.schema_oid, lit(&r.name), r.is_view, opt(&r.comment), opt(&r.sql)))
            .collect(),
    );
    insert(
        &mut s,
        "pond_cols",
        facts
            .columns
            .iter()
            .map(|c| {
                format!(
                    "({}, {}, {}, {}, {}, {}, {})",
                    c.table_oid,
                    lit(&c.name),
                    c.position,
                    lit(&c.data_type),
                    !c.nullable,
                    opt(&c.default),
                    opt(&c.comment)
                )
            })
            .collect(),
    );
    // Column positions by (table, name), tables by (schema, name): for index and foreign-key columns.
    let position = |rel: i64, name: &str| {
        facts.columns.iter().find(|c| c.table_oid == rel && c.name == name).map(|c| c.position).unwrap_or(0).to_string()
    };
    let schema_of = |rel: i64| facts.relations.iter().find(|r| r.oid == rel).map(|r| r.schema_oid);
    insert(
        &mut s,
        "pond_cons",
        facts
            .constraints
            .iter()
            .map(|c| {
                let refrel = c.referenced_table.as_ref().and_then(|t| {
                    let nsp = schema_of(c.table_oid);
                    facts.relations.iter().find(|r| Some(r.schema_oid) == nsp && &r.name == t).map(|r| r.oid)
                });
                let refnums: Vec<String> = match refrel {
                    Some(rel) => c.referenced_columns.iter().map(|col| position(rel, col)).collect(),
                    None => Vec::new(),
                };
                format!(
                    "({}, {}, {}, {}, {}, [{}]::SMALLINT[], {}, {}, {}, {}, [{}]::SMALLINT[])",
                    c.table_oid,
                    c.index,
                    lit(&c.kind),
                    lit(&c.name),
                    list(&c.columns),
                    c.positions.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", "),
                    opt(&c.referenced_table),
                    list(&c.referenced_columns),
                    opt(&c.expression),
                    refrel.map(|r| r.to_string()).unwrap_or_else(|| "NULL".into()),
                    refnums.join(", ")
                )
            })
            .collect(),
    );
    insert(
        &mut s,
        "pond_idx",
        facts
            .indexes
            .iter()
            .map(|x| {
                let cols: Vec<String> = x
                    .expressions
                    .as_deref()
                    .unwrap_or("")
                    .trim_matches(|c| c == '[' || c == ']')
                    .split(',')
                    .map(|c| c.trim().trim_matches('"').to_string())
                    .filter(|c| !c.is_empty())
                    .collect();
                let nums: Vec<String> = cols.iter().map(|c| position(x.table_oid, c)).collect();
                format!("({}, {}, {}, {}, {}, [{}]::SMALLINT[])", x.oid, x.table_oid, lit(&x.name), x.unique, list(&cols), nums.join(", "))
            })
            .collect(),
    );
    // The pg_* tables clients read are refreshed from their views.
    for line in SCHEMA.lines().filter(|l| l.starts_with("CREATE TABLE ") && l.contains(" AS SELECT * FROM pond_v_")) {
        s.push_str(&line.replacen("CREATE TABLE", "CREATE OR REPLACE TABLE", 1));
        s.push('\n');
    }
    s.push_str(&format!("-- {}\n", quote_ident(&ctx.database)));
    s
}

/// The scratch database's fixed part: Pond's raw tables, PostgreSQL's catalog
/// relations as views over them, and the catalog functions as macros.
const SCHEMA: &str = include_str!("pgcatalog.sql");

#[cfg(test)]
mod tests {
    use super::*;

    fn t(sql: &str) -> String {
        translate(sql, "alice")
    }

    #[test]
    fn psql_idioms_are_rewritten() {
        assert_eq!(
            t("WHERE c.relname OPERATOR(pg_catalog.~) '^(t)$' COLLATE pg_catalog.default AND pg_catalog.pg_table_is_visible(c.oid)"),
            "WHERE c.relname ~ ('(?s).*(?:' || '^(t)$' || ').*')  AND pg_table_is_visible(c.oid)"
        );
        assert_eq!(t("n.nspname !~ '^pg_'"), "n.nspname !~ ('(?s).*(?:' || '^pg_' || ').*')");
        assert_eq!(t("x ~* $1"), "x ~ ('(?is).*(?:' || $1 || ').*')");
        assert_eq!(t("conrelid::pg_catalog.regclass AS ontable"), "pond_regclass_name(conrelid) AS ontable");
        assert_eq!(t("VALUES ('16384'::pg_catalog.regclass)"), "VALUES (pond_regclass_oid('16384'))");
        assert_eq!(t("c.reloftype::pg_catalog.regtype::pg_catalog.text"), "pond_regtype_name(c.reloftype)::text");
        assert_eq!(
            t("CAST(CAST(pg_catalog.pg_attribute.attrelid AS REGCLASS) AS TEXT)"),
            "CAST(pond_regclass_name(pg_attribute.attrelid) AS TEXT)"
        );
        assert_eq!(t("classoid = CAST($2 AS REGCLASS)"), "classoid = pond_regclass_oid($2)");
        assert_eq!(t("select current_user, 'current_user'"), "select 'alice', 'current_user'");
        assert_eq!(t("FROM generate_series(0, 3) s, x"), "FROM generate_series(0, 3) s(s), x");
        assert_eq!(
            t("FROM u, pg_catalog.pg_partition_ancestors(t.tgrelid) WITH ORDINALITY AS a(relid, depth)"),
            "FROM u, (SELECT pond_regclass_oid(t.tgrelid) AS relid, 1 AS depth) AS a(relid, depth)"
        );
        // Unterminated and odd input never panics.
        for bad in ["E'\\", "\"é", "'é", "select \"pg_class", "x::", "CAST(", "OPERATOR(", "a ~", "generate_series(", ")::regclass"] {
            let _ = t(bad);
            let _ = handles(bad);
        }
        // Quoted text is never touched.
        assert_eq!(t("select 'pg_catalog.x ~ y'"), "select 'pg_catalog.x ~ y'");
    }

    #[test]
    fn catalog_queries_are_recognized() {
        assert!(handles("SELECT c.oid FROM pg_catalog.pg_class c"));
        assert!(handles("select typname from pg_type"));
        assert!(handles("select has_table_privilege('t', 'SELECT')"));
        assert!(!handles("select * from t"));
        assert!(!handles("select 'pg_class'"));
        assert!(!handles("insert into t select * from pg_class"));
        assert!(!handles("SELECT system.main.current_setting('threads')"));
        assert!(handles("SELECT current_setting('server_version_num')::int / 100"));
        assert!(!handles("SELECT current_setting('allowed_directories')"));
    }
}
