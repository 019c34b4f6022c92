//! Grants and the question every protocol asks: may this identity do that?
//!
//! A [`Policy`] is an immutable snapshot of users, grants and API tokens built
//! from the system metadata; [`crate::Authenticator::policy`] rebuilds it when
//! the metadata changes, so a revoked grant or a dropped user counts from the
//! next statement on.

use std::collections::HashMap;
use std::fmt;

use pond_meta::{GrantRecord, SystemMeta, TokenRecord};

use crate::{Error, Identity, Result};

/// What a statement needs on an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Privilege {
    /// Read rows of a table or view.
    Select,
    Insert,
    Update,
    Delete,
    /// DDL inside a database: create, alter or drop tables, views, schemas, sequences.
    Create,
    /// See that a database exists and make it current (any grant in it).
    Usage,
}

impl Privilege {
    pub fn name(self) -> &'static str {
        match self {
            Privilege::Select => "SELECT",
            Privilege::Insert => "INSERT",
            Privilege::Update => "UPDATE",
            Privilege::Delete => "DELETE",
            Privilege::Create => "WRITE",
            Privilege::Usage => "USAGE",
        }
    }

    fn is_read(self) -> bool {
        matches!(self, Privilege::Select | Privilege::Usage)
    }
}

impl fmt::Display for Privilege {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Database-level privileges.
pub const DB_PRIVILEGES: &[&str] = &["read", "write"];
/// Table-level privileges.
pub const TABLE_PRIVILEGES: &[&str] = &["select", "insert", "update", "delete"];

/// What a GRANT or REVOKE names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantTarget {
    Database(String),
    Table { database: String, schema: String, table: String },
}

impl fmt::Display for GrantTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GrantTarget::Database(d) => write!(f, "database {d}"),
            GrantTarget::Table { database, schema, table } => write!(f, "table {database}.{schema}.{table}"),
        }
    }
}

/// Expands `ALL` and checks privilege names against the target kind.
pub fn normalise_privileges(target: &GrantTarget, privileges: &[String]) -> Result<Vec<String>> {
    let allowed = match target {
        GrantTarget::Database(_) => DB_PRIVILEGES,
        GrantTarget::Table { .. } => TABLE_PRIVILEGES,
    };
    let mut out: Vec<String> = Vec::new();
    for p in privileges {
        let p = p.to_ascii_lowercase();
        if p == "all" || p == "all privileges" {
            out.extend(allowed.iter().map(|s| s.to_string()));
        } else if allowed.contains(&p.as_str()) {
            out.push(p);
        } else {
            return Err(Error::InvalidRequest(format!(
                "privilege '{p}' does not apply to a {}: use {} or ALL",
                match target {
                    GrantTarget::Database(_) => "database",
                    GrantTarget::Table { .. } => "table",
                },
                allowed.iter().map(|s| s.to_ascii_uppercase()).collect::<Vec<_>>().join(", ")
            )));
        }
    }
    out.sort();
    out.dedup();
    if out.is_empty() {
        return Err(Error::InvalidRequest("no privilege named".into()));
    }
    Ok(out)
}

/// An immutable view of who may do what.
#[derive(Debug, Default)]
pub struct Policy {
    /// user -> superuser flag
    users: HashMap<String, bool>,
    /// user or role -> every role it belongs to, directly or through other roles
    roles: HashMap<String, Vec<String>>,
    grants: HashMap<String, Vec<GrantRecord>>,
    pub(crate) tokens_by_digest: HashMap<String, TokenRecord>,
    pub(crate) tokens_by_id: HashMap<String, TokenRecord>,
}

impl Policy {
    pub fn from_meta(meta: &SystemMeta) -> Self {
        let mut grants: HashMap<String, Vec<GrantRecord>> = HashMap::new();
        for g in &meta.grants {
            grants.entry(g.user.clone()).or_default().push(g.clone());
        }
        let direct: HashMap<&str, &Vec<String>> = meta.users.iter().map(|u| (u.name.as_str(), &u.member_of)).collect();
        let mut roles = HashMap::new();
        for u in &meta.users {
            // Breadth-first over memberships; cycles end at the visited set.
            let mut all: Vec<String> = Vec::new();
            let mut queue: Vec<&String> = u.member_of.iter().collect();
            while let Some(r) = queue.pop() {
                if all.contains(r) || *r == u.name {
                    continue;
                }
                all.push(r.clone());
                if let Some(next) = direct.get(r.as_str()) {
                    queue.extend(next.iter());
                }
            }
            roles.insert(u.name.clone(), all);
        }
        Self {
            roles,
            users: meta.users.iter().map(|u| (u.name.clone(), u.superuser)).collect(),
            grants,
            tokens_by_digest: meta.tokens.iter().map(|t| (t.secret_sha256.clone(), t.clone())).collect(),
            tokens_by_id: meta.tokens.iter().map(|t| (t.id.clone(), t.clone())).collect(),
        }
    }

    pub fn user_exists(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    pub fn is_superuser(&self, user: &str) -> bool {
        self.users.get(user).copied().unwrap_or(false)
    }

    /// Whether `identity` may use `privilege` on `database` (and, for table
    /// privileges, on `schema.table` in it).
    pub fn allows(&self, identity: &Identity, database: &str, table: Option<(&str, &str)>, privilege: Privilege) -> bool {
        if identity.effective_superuser() {
            return true;
        }
        if let Some(scope) = &identity.scope {
            if !scope.databases.is_empty() && !scope.databases.iter().any(|d| d == database) {
                return false;
            }
            if !scope.write && !privilege.is_read() {
                return false;
            }
        }
        let principals = std::iter::once(&identity.user).chain(self.roles.get(&identity.user).into_iter().flatten());
        let mut grants = principals.filter_map(|p| self.grants.get(p)).flatten();
        grants.any(|g| {
            g.database == database && {
                let has = |p: &str| g.privileges.iter().any(|x| x == p);
                match (&g.schema, &g.table) {
                    (None, _) => match privilege {
                        Privilege::Select => has("read"),
                        Privilege::Insert | Privilege::Update | Privilege::Delete | Privilege::Create => has("write"),
                        Privilege::Usage => true,
                    },
                    (Some(s), Some(t)) => match privilege {
                        Privilege::Usage => true,
                        Privilege::Create => false,
                        p => table.is_some_and(|(ts, tt)| ts == s && tt == t) && has(&p.name().to_ascii_lowercase()),
                    },
                    _ => false,
                }
            }
        })
    }

    /// The roles a user belongs to, directly or through other roles.
    pub fn roles_of(&self, user: &str) -> &[String] {
        self.roles.get(user).map(Vec::as_slice).unwrap_or_default()
    }

    /// Databases (from `all`) the identity can see at all.
    pub fn visible_databases(&self, identity: &Identity, all: &[String]) -> Vec<String> {
        all.iter().filter(|d| self.allows(identity, d, None, Privilege::Usage)).cloned().collect()
    }

    /// Whether any privilege on the table makes it visible in listings.
    pub fn table_visible(&self, identity: &Identity, database: &str, schema: &str, table: &str) -> bool {
        [Privilege::Select, Privilege::Insert, Privilege::Update, Privilege::Delete]
            .iter()
            .any(|p| self.allows(identity, database, Some((schema, table)), *p))
    }

    /// Grants of one user (or everyone), for SHOW GRANTS.
    pub fn grants(&self, user: Option<&str>) -> Vec<GrantRecord> {
        let mut out: Vec<GrantRecord> = match user {
            Some(u) => self.grants.get(u).cloned().unwrap_or_default(),
            None => self.grants.values().flatten().cloned().collect(),
        };
        out.sort_by(|a, b| (&a.user, &a.database, &a.schema, &a.table).cmp(&(&b.user, &b.database, &b.schema, &b.table)));
        out
    }
}

/// Adds privileges to a user's grant on a target (creating the grant).
pub(crate) fn add_grant(meta: &mut SystemMeta, user: &str, target: &GrantTarget, privileges: &[String]) {
    let (db, schema, table) = split_target(target);
    match meta.grants.iter_mut().find(|g| g.user == user && g.database == db && g.schema == schema && g.table == table) {
        Some(g) => {
            g.privileges.extend(privileges.iter().cloned());
            g.privileges.sort();
            g.privileges.dedup();
        }
        None => meta.grants.push(GrantRecord { user: user.to_string(), database: db, schema, table, privileges: privileges.to_vec() }),
    }
}

/// Removes privileges; a grant left with none disappears. Returns whether anything changed.
pub(crate) fn remove_grant(meta: &mut SystemMeta, user: &str, target: &GrantTarget, privileges: &[String]) -> bool {
    let (db, schema, table) = split_target(target);
    let before = meta.grants.clone();
    for g in meta.grants.iter_mut().filter(|g| g.user == user && g.database == db && g.schema == schema && g.table == table) {
        g.privileges.retain(|p| !privileges.contains(p));
    }
    meta.grants.retain(|g| !g.privileges.is_empty());
    before != meta.grants
}

fn split_target(target: &GrantTarget) -> (String, Option<String>, Option<String>) {
    match target {
        GrantTarget::Database(d) => (d.clone(), None, None),
        GrantTarget::Table { database, schema, table } => (database.clone(), Some(schema.clone()), Some(table.clone())),
    }
}

/// Keeps grants and token scopes pointing at a database after a rename.
pub fn database_renamed(meta: &mut SystemMeta, from: &str, to: &str) {
    for g in meta.grants.iter_mut().filter(|g| g.database == from) {
        g.database = to.to_string();
    }
    for t in meta.tokens.iter_mut() {
        for d in t.databases.iter_mut().filter(|d| d.as_str() == from) {
            *d = to.to_string();
        }
    }
    for c in meta.oauth_clients.iter_mut() {
        for d in c.databases.iter_mut().filter(|d| d.as_str() == from) {
            *d = to.to_string();
        }
    }
}

/// Drops grants on a database that no longer exists (a new database with the
/// same name must not inherit them).
pub fn database_dropped(meta: &mut SystemMeta, name: &str) {
    meta.grants.retain(|g| g.database != name);
}

/// Drops table grants of a dropped table, and moves them along a rename.
pub fn table_renamed(meta: &mut SystemMeta, database: &str, schema: &str, from: &str, to: Option<&str>) {
    let matches = |g: &GrantRecord| g.database == database && g.schema.as_deref() == Some(schema) && g.table.as_deref() == Some(from);
    match to {
        Some(to) => {
            for g in meta.grants.iter_mut().filter(|g| matches(g)) {
                g.table = Some(to.to_string());
            }
        }
        None => meta.grants.retain(|g| !matches(g)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Scope, Via};

    fn user(name: &str) -> Identity {
        Identity { user: name.into(), superuser: false, scope: None, via: Via::Password }
    }

    #[test]
    fn database_and_table_grants() {
        let mut meta = SystemMeta::default();
        meta.users.push(pond_meta::UserRecord {
            name: "u".into(),
            password_hash: String::new(),
            scram_sha256: None,
            superuser: false,
            created_at: String::new(),
            is_role: false,
            member_of: Vec::new(),
        });
        add_grant(&mut meta, "u", &GrantTarget::Database("a".into()), &["read".into()]);
        add_grant(
            &mut meta,
            "u",
            &GrantTarget::Table { database: "b".into(), schema: "main".into(), table: "t".into() },
            &["insert".into()],
        );
        let p = Policy::from_meta(&meta);
        let u = user("u");
        assert!(p.allows(&u, "a", Some(("main", "x")), Privilege::Select));
        assert!(!p.allows(&u, "a", Some(("main", "x")), Privilege::Insert));
        assert!(!p.allows(&u, "a", None, Privilege::Create));
        assert!(p.allows(&u, "b", Some(("main", "t")), Privilege::Insert));
        assert!(!p.allows(&u, "b", Some(("main", "t")), Privilege::Select));
        assert!(!p.allows(&u, "b", Some(("main", "other")), Privilege::Insert));
        assert!(p.allows(&u, "b", None, Privilege::Usage));
        assert!(!p.allows(&u, "c", None, Privilege::Usage));
        assert_eq!(p.visible_databases(&u, &["a".into(), "b".into(), "c".into()]), vec!["a", "b"]);
        // A read-only token of the same user cannot write even where the user can.
        let scoped = Identity { scope: Some(Scope { databases: vec!["b".into()], write: false }), ..u.clone() };
        assert!(!p.allows(&scoped, "b", Some(("main", "t")), Privilege::Insert));
        assert!(!p.allows(&scoped, "a", Some(("main", "x")), Privilege::Select));

        assert!(remove_grant(&mut meta, "u", &GrantTarget::Database("a".into()), &["read".into()]));
        assert!(!Policy::from_meta(&meta).allows(&u, "a", Some(("main", "x")), Privilege::Select));
        database_renamed(&mut meta, "b", "b2");
        assert!(Policy::from_meta(&meta).allows(&u, "b2", Some(("main", "t")), Privilege::Insert));
        database_dropped(&mut meta, "b2");
        assert!(meta.grants.is_empty());
    }

    #[test]
    fn roles_lend_their_grants_to_members() {
        let mut meta = SystemMeta::default();
        let rec = |name: &str, role: bool, member_of: &[&str]| pond_meta::UserRecord {
            name: name.into(),
            password_hash: String::new(),
            scram_sha256: None,
            superuser: false,
            created_at: String::new(),
            is_role: role,
            member_of: member_of.iter().map(|s| s.to_string()).collect(),
        };
        meta.users.push(rec("analysts", true, &["readers"]));
        meta.users.push(rec("readers", true, &["analysts"])); // a cycle must not loop
        meta.users.push(rec("bob", false, &["analysts"]));
        meta.users.push(rec("carol", false, &[]));
        add_grant(&mut meta, "readers", &GrantTarget::Database("sales".into()), &["read".into()]);
        let p = Policy::from_meta(&meta);
        assert!(p.allows(&user("bob"), "sales", Some(("main", "t")), Privilege::Select), "through analysts -> readers");
        assert!(!p.allows(&user("bob"), "sales", Some(("main", "t")), Privilege::Insert));
        assert!(!p.allows(&user("carol"), "sales", Some(("main", "t")), Privilege::Select));
        assert_eq!(p.roles_of("bob"), ["analysts".to_string(), "readers".to_string()]);
    }

    #[test]
    fn privilege_names_are_checked() {
        let db = GrantTarget::Database("a".into());
        assert_eq!(normalise_privileges(&db, &["ALL".into()]).unwrap(), vec!["read", "write"]);
        assert!(normalise_privileges(&db, &["select".into()]).unwrap_err().to_string().contains("READ, WRITE"));
        let t = GrantTarget::Table { database: "a".into(), schema: "main".into(), table: "t".into() };
        assert_eq!(normalise_privileges(&t, &["all privileges".into()]).unwrap().len(), 4);
    }
}
