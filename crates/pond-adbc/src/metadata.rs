//! Building ADBC's metadata results (GetInfo, GetObjects, GetStatistics) as
//! Arrow arrays in the exact schemas `adbc_core::schemas` defines, from what
//! Pond's Flight SQL metadata calls return.

use std::sync::Arc;

use adbc_core::schemas;
use arrow_array::builder::{BooleanBuilder, Int16Builder, Int32Builder, Int64Builder, StringBuilder, UInt32Builder};
use arrow_array::{new_empty_array, new_null_array, Array, ArrayRef, ListArray, RecordBatch, StructArray, UnionArray};
use arrow_schema::{DataType, Field, Fields, Schema, UnionFields};

use crate::error::{Error, Result};

/// A value of GetInfo's dense union.
pub enum InfoValue {
    Str(String),
    Bool(bool),
    Int64(i64),
}

fn struct_fields(dt: &DataType) -> Fields {
    match dt {
        DataType::Struct(f) => f.clone(),
        _ => Fields::empty(),
    }
}

fn union_fields(dt: &DataType) -> UnionFields {
    match dt {
        DataType::Union(f, _) => f.clone(),
        _ => UnionFields::empty(),
    }
}

pub fn info_batch(rows: Vec<(u32, InfoValue)>) -> Result<RecordBatch> {
    let schema = schemas::GET_INFO_SCHEMA.clone();
    let value_type = schema.field(1).data_type().clone();
    let ufields = union_fields(&value_type);
    let mut names = UInt32Builder::new();
    let mut strings = StringBuilder::new();
    let mut bools = BooleanBuilder::new();
    let mut ints = Int64Builder::new();
    let (mut type_ids, mut offsets) = (Vec::new(), Vec::new());
    let (mut n_str, mut n_bool, mut n_int) = (0i32, 0i32, 0i32);
    for (code, v) in rows {
        names.append_value(code);
        match v {
            InfoValue::Str(s) => {
                type_ids.push(0i8);
                offsets.push(n_str);
                n_str += 1;
                strings.append_value(s);
            }
            InfoValue::Bool(b) => {
                type_ids.push(1);
                offsets.push(n_bool);
                n_bool += 1;
                bools.append_value(b);
            }
            InfoValue::Int64(i) => {
                type_ids.push(2);
                offsets.push(n_int);
                n_int += 1;
                ints.append_value(i);
            }
        }
    }
    let children: Vec<ArrayRef> = ufields
        .iter()
        .map(|(id, f)| -> ArrayRef {
            match id {
                0 => Arc::new(strings.finish()),
                1 => Arc::new(bools.finish()),
                2 => Arc::new(ints.finish()),
                _ => new_empty_array(f.data_type()),
            }
        })
        .collect();
    let values = UnionArray::try_new(ufields, type_ids.into(), Some(offsets.into()), children)?;
    Ok(RecordBatch::try_new(schema, vec![Arc::new(names.finish()), Arc::new(values)])?)
}

/// SQL LIKE (`%`, `_`, `\` escapes), as ADBC's search patterns mean.
pub fn like(pattern: &str, s: &str) -> bool {
    fn go(p: &[char], s: &[char]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some('%') => (0..=s.len()).any(|i| go(&p[1..], &s[i..])),
            Some('_') => !s.is_empty() && go(&p[1..], &s[1..]),
            Some('\\') if p.len() > 1 => s.first() == Some(&p[1]) && go(&p[2..], &s[1..]),
            Some(c) => s.first() == Some(c) && go(&p[1..], &s[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = s.chars().collect();
    go(&p, &s)
}

/// A name as a LIKE pattern matching only itself.
pub fn escape_like(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

pub fn matches(pattern: Option<&str>, s: &str) -> bool {
    pattern.is_none_or(|p| like(p, s))
}

pub struct ColumnInfo {
    pub name: String,
    pub type_name: Option<String>,
    pub nullable: bool,
    pub precision: Option<i32>,
    pub scale: Option<i16>,
}

pub struct TableInfo {
    pub name: String,
    pub table_type: String,
    /// `None` below depth "columns".
    pub columns: Option<Vec<(i32, ColumnInfo)>>,
}

pub struct SchemaInfo {
    pub name: String,
    pub tables: Option<Vec<TableInfo>>,
}

pub struct CatalogInfo {
    pub name: String,
    pub schemas: Option<Vec<SchemaInfo>>,
}

/// Columns of a table from the Arrow schema GetTables returns (with its
/// `ARROW:FLIGHT:SQL:*` field metadata).
pub fn columns_of(schema: &Schema, column_pattern: Option<&str>) -> Vec<(i32, ColumnInfo)> {
    schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| matches(column_pattern, f.name()))
        .map(|(i, f)| {
            let md = f.metadata();
            let col = ColumnInfo {
                name: f.name().clone(),
                type_name: md.get("ARROW:FLIGHT:SQL:TYPE_NAME").cloned().or_else(|| Some(f.data_type().to_string())),
                nullable: f.is_nullable(),
                precision: md.get("ARROW:FLIGHT:SQL:PRECISION").and_then(|v| v.parse().ok()),
                scale: md.get("ARROW:FLIGHT:SQL:SCALE").and_then(|v| v.parse().ok()),
            };
            (i as i32 + 1, col)
        })
        .collect()
}

fn list_of(item_type: &DataType, offsets: Vec<i32>, valid: Vec<bool>, values: ArrayRef) -> Result<ListArray> {
    let field = Arc::new(Field::new_list_field(item_type.clone(), true));
    let nulls = if valid.iter().all(|v| *v) { None } else { Some(arrow_buffer::NullBuffer::from(valid)) };
    Ok(ListArray::try_new(field, arrow_buffer::OffsetBuffer::new(offsets.into()), values, nulls)?)
}

fn columns_array(cols: &[&(i32, ColumnInfo)]) -> Result<ArrayRef> {
    let fields = struct_fields(&schemas::COLUMN_SCHEMA);
    let n = cols.len();
    let mut name = StringBuilder::new();
    let mut ordinal = Int32Builder::new();
    let mut type_name = StringBuilder::new();
    let mut size = Int32Builder::new();
    let mut digits = Int16Builder::new();
    let mut radix = Int16Builder::new();
    let mut nullable = Int16Builder::new();
    let mut is_nullable = StringBuilder::new();
    let mut auto = BooleanBuilder::new();
    for (pos, c) in cols.iter().map(|c| (&c.0, &c.1)) {
        name.append_value(&c.name);
        ordinal.append_value(*pos);
        type_name.append_option(c.type_name.as_deref());
        size.append_option(c.precision);
        digits.append_option(c.scale);
        radix.append_option(c.precision.map(|_| 10));
        nullable.append_value(if c.nullable { 1 } else { 0 });
        is_nullable.append_value(if c.nullable { "YES" } else { "NO" });
        auto.append_value(false);
    }
    let mut arrays: Vec<ArrayRef> = Vec::new();
    let (mut auto_done, mut gen_done) = (Some(auto.finish()), Some(BooleanBuilder::new()));
    for f in fields.iter() {
        let a: ArrayRef = match f.name().as_str() {
            "column_name" => Arc::new(name.finish()),
            "ordinal_position" => Arc::new(ordinal.finish()),
            "xdbc_type_name" => Arc::new(type_name.finish()),
            "xdbc_column_size" => Arc::new(size.finish()),
            "xdbc_decimal_digits" => Arc::new(digits.finish()),
            "xdbc_num_prec_radix" => Arc::new(radix.finish()),
            "xdbc_nullable" => Arc::new(nullable.finish()),
            "xdbc_is_nullable" => Arc::new(is_nullable.finish()),
            "xdbc_is_autoincrement" => Arc::new(auto_done.take().unwrap_or_else(|| BooleanBuilder::new().finish())),
            "xdbc_is_generatedcolumn" => {
                let mut b = gen_done.take().unwrap_or_default();
                for _ in 0..n {
                    b.append_value(false);
                }
                Arc::new(b.finish())
            }
            _ => new_null_array(f.data_type(), n),
        };
        arrays.push(a);
    }
    Ok(Arc::new(StructArray::try_new(fields, arrays, None)?))
}

fn tables_array(tables: &[&TableInfo]) -> Result<ArrayRef> {
    let fields = struct_fields(&schemas::TABLE_SCHEMA);
    let mut name = StringBuilder::new();
    let mut ttype = StringBuilder::new();
    let mut col_offsets = vec![0i32];
    let mut col_valid = Vec::new();
    let mut all_cols = Vec::new();
    for t in tables {
        name.append_value(&t.name);
        ttype.append_value(&t.table_type);
        match &t.columns {
            Some(c) => {
                all_cols.extend(c.iter());
                col_valid.push(true);
            }
            None => col_valid.push(false),
        }
        col_offsets.push(all_cols.len() as i32);
    }
    let columns = list_of(&schemas::COLUMN_SCHEMA, col_offsets, col_valid.clone(), columns_array(&all_cols)?)?;
    // Pond reports no constraints here: empty lists where columns are listed.
    let constraints =
        list_of(&schemas::CONSTRAINT_SCHEMA, vec![0; tables.len() + 1], col_valid, new_empty_array(&schemas::CONSTRAINT_SCHEMA))?;
    let arrays: Vec<ArrayRef> = vec![Arc::new(name.finish()), Arc::new(ttype.finish()), Arc::new(columns), Arc::new(constraints)];
    Ok(Arc::new(StructArray::try_new(fields, arrays, None)?))
}

fn schemas_array(db_schemas: &[&SchemaInfo]) -> Result<ArrayRef> {
    let fields = struct_fields(&schemas::OBJECTS_DB_SCHEMA_SCHEMA);
    let mut name = StringBuilder::new();
    let mut offsets = vec![0i32];
    let mut valid = Vec::new();
    let mut all = Vec::new();
    for s in db_schemas {
        name.append_value(&s.name);
        match &s.tables {
            Some(t) => {
                all.extend(t.iter());
                valid.push(true);
            }
            None => valid.push(false),
        }
        offsets.push(all.len() as i32);
    }
    let tables = list_of(&schemas::TABLE_SCHEMA, offsets, valid, tables_array(&all)?)?;
    Ok(Arc::new(StructArray::try_new(fields, vec![Arc::new(name.finish()), Arc::new(tables)], None)?))
}

pub fn objects_batch(catalogs: &[CatalogInfo]) -> Result<RecordBatch> {
    let schema = schemas::GET_OBJECTS_SCHEMA.clone();
    let mut name = StringBuilder::new();
    let mut offsets = vec![0i32];
    let mut valid = Vec::new();
    let mut all = Vec::new();
    for c in catalogs {
        name.append_value(&c.name);
        match &c.schemas {
            Some(s) => {
                all.extend(s.iter());
                valid.push(true);
            }
            None => valid.push(false),
        }
        offsets.push(all.len() as i32);
    }
    let db_schemas = list_of(&schemas::OBJECTS_DB_SCHEMA_SCHEMA, offsets, valid, schemas_array(&all)?)?;
    Ok(RecordBatch::try_new(schema, vec![Arc::new(name.finish()), Arc::new(db_schemas)])?)
}

/// One row count: (catalog, schema, table, rows, approximate).
pub type RowCount = (String, String, String, i64, bool);

pub fn statistics_batch(rows: &[RowCount]) -> Result<RecordBatch> {
    let schema = schemas::GET_STATISTICS_SCHEMA.clone();
    let key: i16 = adbc_core::options::Statistics::RowCount.into();
    // Group by catalog, then schema (rows arrive sorted).
    let mut cat_names = StringBuilder::new();
    let mut cat_offsets = vec![0i32];
    let mut sch_names = StringBuilder::new();
    let mut sch_offsets = vec![0i32];
    let (mut tables, mut keys, mut values, mut approx) =
        (StringBuilder::new(), Int16Builder::new(), Int64Builder::new(), BooleanBuilder::new());
    let mut n_schemas = 0i32;
    let mut n_stats = 0i32;
    let mut i = 0;
    while i < rows.len() {
        let cat = &rows[i].0;
        cat_names.append_value(cat);
        while i < rows.len() && &rows[i].0 == cat {
            let sch = &rows[i].1;
            sch_names.append_value(sch);
            while i < rows.len() && &rows[i].0 == cat && &rows[i].1 == sch {
                tables.append_value(&rows[i].2);
                keys.append_value(key);
                values.append_value(rows[i].3);
                approx.append_value(rows[i].4);
                n_stats += 1;
                i += 1;
            }
            n_schemas += 1;
            sch_offsets.push(n_stats);
        }
        cat_offsets.push(n_schemas);
    }
    let value_type = &*schemas::STATISTIC_VALUE_SCHEMA;
    let ufields = union_fields(value_type);
    let n = n_stats as usize;
    let children: Vec<ArrayRef> = ufields
        .iter()
        .map(|(id, f)| -> ArrayRef {
            if id == 0 {
                Arc::new(values.finish())
            } else {
                new_empty_array(f.data_type())
            }
        })
        .collect();
    let union = UnionArray::try_new(ufields, vec![0i8; n].into(), Some((0..n_stats).collect::<Vec<i32>>().into()), children)?;
    let stat_fields = struct_fields(&schemas::STATISTICS_SCHEMA);
    let stats = StructArray::try_new(
        stat_fields,
        vec![
            Arc::new(tables.finish()),
            new_null_array(&DataType::Utf8, n),
            Arc::new(keys.finish()),
            Arc::new(union),
            Arc::new(approx.finish()),
        ],
        None,
    )?;
    let n_sch = n_schemas as usize;
    let stats_list = list_of(&schemas::STATISTICS_SCHEMA, sch_offsets, vec![true; n_sch], Arc::new(stats))?;
    let sch = StructArray::try_new(
        struct_fields(&schemas::STATISTICS_DB_SCHEMA_SCHEMA),
        vec![Arc::new(sch_names.finish()), Arc::new(stats_list)],
        None,
    )?;
    let n_cat = cat_offsets.len() - 1;
    let sch_list = list_of(&schemas::STATISTICS_DB_SCHEMA_SCHEMA, cat_offsets, vec![true; n_cat], Arc::new(sch))?;
    Ok(RecordBatch::try_new(schema, vec![Arc::new(cat_names.finish()), Arc::new(sch_list)])?)
}

/// Reads a string column of a metadata answer.
pub fn strings(batch: &RecordBatch, name: &str) -> Result<Vec<Option<String>>> {
    let col = batch.column_by_name(name).ok_or_else(|| Error::Internal(format!("the server's answer has no column '{name}'")))?;
    let col = arrow_cast_utf8(col)?;
    Ok((0..col.len()).map(|i| if col.is_null(i) { None } else { Some(col.value(i).to_string()) }).collect())
}

fn arrow_cast_utf8(col: &ArrayRef) -> Result<arrow_array::StringArray> {
    col.as_any()
        .downcast_ref::<arrow_array::StringArray>()
        .cloned()
        .ok_or_else(|| Error::Internal(format!("expected a string column, got {}", col.data_type())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns() {
        assert!(like("t%", "table"));
        assert!(like("t_b", "tab"));
        assert!(!like("t\\_b", "tab"));
        assert!(like("t\\_b", "t_b"));
        assert!(like(&escape_like("a_b%"), "a_b%"));
        assert!(!like(&escape_like("a_b"), "axb"));
    }

    #[test]
    fn objects_batch_matches_adbc_schema() {
        let cats = vec![CatalogInfo {
            name: "memory".into(),
            schemas: Some(vec![SchemaInfo {
                name: "main".into(),
                tables: Some(vec![TableInfo {
                    name: "t".into(),
                    table_type: "BASE TABLE".into(),
                    columns: Some(vec![(
                        1,
                        ColumnInfo { name: "a".into(), type_name: Some("INTEGER".into()), nullable: true, precision: None, scale: None },
                    )]),
                }]),
            }]),
        }];
        let b = objects_batch(&cats).unwrap();
        assert_eq!(b.schema(), schemas::GET_OBJECTS_SCHEMA.clone());
        assert_eq!(b.num_rows(), 1);
    }

    #[test]
    fn statistics_and_info_batches_build() {
        let b =
            statistics_batch(&[("m".into(), "main".into(), "t".into(), 3, true), ("m".into(), "s".into(), "u".into(), 4, true)]).unwrap();
        assert_eq!(b.num_rows(), 1);
        let i =
            info_batch(vec![(0, InfoValue::Str("Pond".into())), (3, InfoValue::Bool(true)), (103, InfoValue::Int64(1_001_000))]).unwrap();
        assert_eq!(i.num_rows(), 3);
    }
}
