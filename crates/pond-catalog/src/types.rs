//! Hive type names → DuckDB type names.
//!
//! Hive writes types as text (`int`, `decimal(10,2)`, `varchar(20)`,
//! `array<string>`, `map<string,int>`, `struct<a:int,b:array<string>>`); this
//! module parses that text and renders the DuckDB type a reader should produce.
//! `uniontype` and anything unknown is refused with the type's name.

/// The DuckDB type for a Hive type text, or the reason it has none.
pub fn duckdb_type(hive: &str) -> Result<String, String> {
    let mut p = Parser { s: hive.as_bytes(), i: 0 };
    let t = p.parse()?;
    p.skip_ws();
    if p.i != p.s.len() {
        return Err(format!("unexpected text after position {} in type '{hive}'", p.i));
    }
    Ok(t)
}

/// How partition values of a key compare, for pruning. Keys of other types
/// are never used to prune (every partition is kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    String,
    Integer,
    Date,
    Other,
}

/// The comparison kind of a partition key's Hive type.
pub fn key_kind(hive: &str) -> KeyKind {
    let base = hive.trim().to_ascii_lowercase();
    let base = base.split('(').next().unwrap_or("").trim().to_string();
    match base.as_str() {
        "string" | "varchar" | "char" => KeyKind::String,
        "tinyint" | "smallint" | "int" | "integer" | "bigint" => KeyKind::Integer,
        "date" => KeyKind::Date,
        _ => KeyKind::Other,
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn word(&mut self) -> String {
        self.skip_ws();
        let start = self.i;
        while self.i < self.s.len() && (self.s[self.i].is_ascii_alphanumeric() || self.s[self.i] == b'_') {
            self.i += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.i]).to_ascii_lowercase()
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        self.skip_ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected '{}' at position {} in type '{}'", c as char, self.i, String::from_utf8_lossy(self.s)))
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.i).copied()
    }

    /// `(n[,m])` after a type name, as numbers.
    fn params(&mut self) -> Result<Vec<u32>, String> {
        if self.peek() != Some(b'(') {
            return Ok(Vec::new());
        }
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let w = self.word();
            out.push(w.parse::<u32>().map_err(|_| format!("bad type parameter '{w}'"))?);
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b')') => {
                    self.i += 1;
                    return Ok(out);
                }
                _ => return Err("unterminated type parameters".into()),
            }
        }
    }

    fn parse(&mut self) -> Result<String, String> {
        let name = self.word();
        let t = match name.as_str() {
            "tinyint" => "TINYINT".into(),
            "smallint" => "SMALLINT".into(),
            "int" | "integer" => "INTEGER".into(),
            "bigint" => "BIGINT".into(),
            "float" => "FLOAT".into(),
            "double" => {
                // `double precision`
                let save = self.i;
                if self.word() != "precision" {
                    self.i = save;
                }
                "DOUBLE".into()
            }
            "boolean" => "BOOLEAN".into(),
            "string" => "VARCHAR".into(),
            "varchar" | "char" => {
                self.params()?;
                "VARCHAR".into()
            }
            "binary" => "BLOB".into(),
            "date" => "DATE".into(),
            "timestamp" => "TIMESTAMP".into(),
            "decimal" | "numeric" => match self.params()?.as_slice() {
                [] => "DECIMAL(10,0)".into(),
                [p] => format!("DECIMAL({p},0)"),
                [p, s] if *p <= 38 && s <= p => format!("DECIMAL({p},{s})"),
                other => return Err(format!("unsupported decimal parameters {other:?}")),
            },
            "array" => {
                self.expect(b'<')?;
                let inner = self.parse()?;
                self.expect(b'>')?;
                format!("{inner}[]")
            }
            "map" => {
                self.expect(b'<')?;
                let k = self.parse()?;
                self.expect(b',')?;
                let v = self.parse()?;
                self.expect(b'>')?;
                format!("MAP({k}, {v})")
            }
            "struct" => {
                self.expect(b'<')?;
                let mut fields = Vec::new();
                if self.peek() == Some(b'>') {
                    return Err("a struct needs at least one field".into());
                }
                loop {
                    let field = self.field_name()?;
                    self.expect(b':')?;
                    let t = self.parse()?;
                    fields.push(format!("\"{}\" {t}", field.replace('"', "\"\"")));
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'>') => {
                            self.i += 1;
                            break;
                        }
                        _ => return Err("unterminated struct type".into()),
                    }
                }
                format!("STRUCT({})", fields.join(", "))
            }
            "" => return Err(format!("missing type name at position {}", self.i)),
            other => return Err(format!("Hive type '{other}' is not supported")),
        };
        Ok(t)
    }

    /// A struct field name: a word, or a backquoted name.
    fn field_name(&mut self) -> Result<String, String> {
        self.skip_ws();
        if self.s.get(self.i) == Some(&b'`') {
            let start = self.i + 1;
            let end = self.s[start..].iter().position(|&c| c == b'`').ok_or("unterminated `name` in struct type")? + start;
            self.i = end + 1;
            return Ok(String::from_utf8_lossy(&self.s[start..end]).into_owned());
        }
        let start = self.i;
        while self.i < self.s.len() && (self.s[self.i].is_ascii_alphanumeric() || self.s[self.i] == b'_') {
            self.i += 1;
        }
        if start == self.i {
            return Err(format!("missing struct field name at position {start}"));
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primitive_types() {
        for (h, d) in [
            ("int", "INTEGER"),
            ("BIGINT", "BIGINT"),
            ("tinyint", "TINYINT"),
            ("smallint", "SMALLINT"),
            ("float", "FLOAT"),
            ("double", "DOUBLE"),
            ("double precision", "DOUBLE"),
            ("boolean", "BOOLEAN"),
            ("string", "VARCHAR"),
            ("varchar(20)", "VARCHAR"),
            ("char(3)", "VARCHAR"),
            ("binary", "BLOB"),
            ("date", "DATE"),
            ("timestamp", "TIMESTAMP"),
            ("decimal", "DECIMAL(10,0)"),
            ("decimal(12)", "DECIMAL(12,0)"),
            ("decimal(10, 2)", "DECIMAL(10,2)"),
        ] {
            assert_eq!(duckdb_type(h).as_deref(), Ok(d), "{h}");
        }
    }

    #[test]
    fn nested_types() {
        assert_eq!(duckdb_type("array<string>").unwrap(), "VARCHAR[]");
        assert_eq!(duckdb_type("map<string,array<int>>").unwrap(), "MAP(VARCHAR, INTEGER[])");
        assert_eq!(
            duckdb_type("struct<a:int, `b c`:array<struct<d:decimal(5,1)>>>").unwrap(),
            "STRUCT(\"a\" INTEGER, \"b c\" STRUCT(\"d\" DECIMAL(5,1))[])"
        );
    }

    #[test]
    fn refused_types() {
        assert!(duckdb_type("uniontype<int,string>").unwrap_err().contains("uniontype"));
        assert!(duckdb_type("array<int").is_err());
        assert!(duckdb_type("int extra").is_err());
        assert!(duckdb_type("decimal(50,2)").is_err());
        assert!(duckdb_type("").is_err());
    }

    #[test]
    fn key_kinds() {
        assert_eq!(key_kind("string"), KeyKind::String);
        assert_eq!(key_kind("varchar(10)"), KeyKind::String);
        assert_eq!(key_kind("INT"), KeyKind::Integer);
        assert_eq!(key_kind("bigint"), KeyKind::Integer);
        assert_eq!(key_kind("date"), KeyKind::Date);
        assert_eq!(key_kind("timestamp"), KeyKind::Other);
        assert_eq!(key_kind("decimal(10,2)"), KeyKind::Other);
    }
}
