//! Static Flight SQL metadata: GetSqlInfo answers, GetXdbcTypeInfo rows and the
//! result schemas of the key listings.

use std::sync::Arc;

use arrow_array::{ArrayRef, Int32Array, RecordBatch, StringArray, UInt8Array};
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder};
use arrow_flight::sql::{
    Nullable, Searchable, SqlInfo, SqlNullOrdering, SqlSupportedCaseSensitivity, SqlSupportedTransaction, SqlTransactionIsolationLevel,
    XdbcDataType,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use pond_engine::introspect::{ForeignKey, KeyColumn};

const KEYWORDS: &[&str] = &[
    "ANALYZE",
    "ANTI",
    "ASOF",
    "ATTACH",
    "CHECKPOINT",
    "COLUMNS",
    "COPY",
    "DATABASE",
    "DATABASES",
    "DESCRIBE",
    "DETACH",
    "EXCLUDE",
    "EXPORT",
    "ILIKE",
    "IMPORT",
    "INSTALL",
    "LOAD",
    "MACRO",
    "MAP",
    "PIVOT",
    "POSITIONAL",
    "PRAGMA",
    "QUALIFY",
    "RENAME",
    "REPLACE",
    "RETURNING",
    "SAMPLE",
    "SEMI",
    "SHOW",
    "STRUCT",
    "SUMMARIZE",
    "UNPIVOT",
    "USE",
];
const NUMERIC_FUNCTIONS: &[&str] = &[
    "abs", "acos", "asin", "atan", "atan2", "cbrt", "ceil", "cos", "cot", "degrees", "exp", "floor", "ln", "log", "log10", "log2", "mod",
    "pi", "pow", "power", "radians", "random", "round", "sign", "sin", "sqrt", "tan", "trunc",
];
const STRING_FUNCTIONS: &[&str] = &[
    "concat",
    "concat_ws",
    "contains",
    "left",
    "length",
    "lower",
    "lpad",
    "ltrim",
    "position",
    "regexp_matches",
    "regexp_replace",
    "repeat",
    "replace",
    "reverse",
    "right",
    "rpad",
    "rtrim",
    "split_part",
    "starts_with",
    "strpos",
    "substring",
    "trim",
    "upper",
];
const SYSTEM_FUNCTIONS: &[&str] = &["current_database", "current_schema", "current_user", "version"];
const DATETIME_FUNCTIONS: &[&str] = &[
    "age",
    "current_date",
    "current_time",
    "current_timestamp",
    "date_diff",
    "date_part",
    "date_trunc",
    "epoch",
    "epoch_ms",
    "epoch_ns",
    "extract",
    "make_date",
    "make_timestamp",
    "now",
    "strftime",
    "strptime",
    "time_bucket",
    "to_timestamp",
];

/// Everything GetSqlInfo can answer. JDBC builds DatabaseMetaData from these, so
/// every value it may ask for is present.
pub fn sql_info(version: &str, duckdb_version: &str) -> SqlInfoData {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "Pond");
    b.append(SqlInfo::FlightSqlServerVersion, format!("{version} (DuckDB {duckdb_version})").as_str());
    b.append(SqlInfo::FlightSqlServerArrowVersion, "58");
    b.append(SqlInfo::FlightSqlServerReadOnly, false);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(SqlInfo::FlightSqlServerTransaction, SqlSupportedTransaction::Transaction as i32);
    b.append(SqlInfo::FlightSqlServerCancel, true);
    b.append(SqlInfo::FlightSqlServerBulkIngestion, true);
    b.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, true);
    b.append(SqlInfo::FlightSqlServerStatementTimeout, 0i32);
    b.append(SqlInfo::FlightSqlServerTransactionTimeout, 0i32);
    b.append(SqlInfo::SqlDdlCatalog, true);
    b.append(SqlInfo::SqlDdlSchema, true);
    b.append(SqlInfo::SqlDdlTable, true);
    b.append(SqlInfo::SqlIdentifierCase, SqlSupportedCaseSensitivity::SqlCaseSensitivityCaseInsensitive as i32);
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(SqlInfo::SqlQuotedIdentifierCase, SqlSupportedCaseSensitivity::SqlCaseSensitivityCaseInsensitive as i32);
    b.append(SqlInfo::SqlAllTablesAreSelectable, true);
    b.append(SqlInfo::SqlNullOrdering, SqlNullOrdering::SqlNullsSortedAtEnd as i32);
    b.append(SqlInfo::SqlKeywords, KEYWORDS);
    b.append(SqlInfo::SqlNumericFunctions, NUMERIC_FUNCTIONS);
    b.append(SqlInfo::SqlStringFunctions, STRING_FUNCTIONS);
    b.append(SqlInfo::SqlSystemFunctions, SYSTEM_FUNCTIONS);
    b.append(SqlInfo::SqlDatetimeFunctions, DATETIME_FUNCTIONS);
    b.append(SqlInfo::SqlSearchStringEscape, "\\");
    b.append(SqlInfo::SqlExtraNameCharacters, "");
    b.append(SqlInfo::SqlSupportsColumnAliasing, true);
    b.append(SqlInfo::SqlNullPlusNullIsNull, true);
    b.append(SqlInfo::SqlSupportsTableCorrelationNames, true);
    b.append(SqlInfo::SqlSupportsDifferentTableCorrelationNames, false);
    b.append(SqlInfo::SqlSupportsExpressionsInOrderBy, true);
    b.append(SqlInfo::SqlSupportsOrderByUnrelated, true);
    // Bitmasks: GROUP BY unrelated (1) | beyond select (2).
    b.append(SqlInfo::SqlSupportedGroupBy, 3i32);
    b.append(SqlInfo::SqlSupportsLikeEscapeClause, true);
    b.append(SqlInfo::SqlSupportsNonNullableColumns, true);
    // Minimum | core | extended SQL grammar.
    b.append(SqlInfo::SqlSupportedGrammar, 7i32);
    // ANSI-92 entry | intermediate | full.
    b.append(SqlInfo::SqlAnsi92SupportedLevel, 7i32);
    b.append(SqlInfo::SqlSupportsIntegrityEnhancementFacility, true);
    // Full outer joins.
    b.append(SqlInfo::SqlOuterJoinsSupportLevel, 2i32);
    b.append(SqlInfo::SqlSchemaTerm, "schema");
    b.append(SqlInfo::SqlProcedureTerm, "macro");
    b.append(SqlInfo::SqlCatalogTerm, "database");
    b.append(SqlInfo::SqlCatalogAtStart, true);
    // Schemas and catalogs usable in DML, procedure calls, table and index definitions.
    b.append(SqlInfo::SqlSchemasSupportedActions, 7i32);
    b.append(SqlInfo::SqlCatalogsSupportedActions, 7i32);
    b.append(SqlInfo::SqlSupportedPositionedCommands, 0i32);
    b.append(SqlInfo::SqlSelectForUpdateSupported, false);
    b.append(SqlInfo::SqlStoredProceduresSupported, false);
    // Subqueries in comparisons | EXISTS | IN | quantified.
    b.append(SqlInfo::SqlSupportedSubqueries, 15i32);
    b.append(SqlInfo::SqlCorrelatedSubqueriesSupported, true);
    // UNION | UNION ALL.
    b.append(SqlInfo::SqlSupportedUnions, 3i32);
    for info in [
        SqlInfo::SqlMaxBinaryLiteralLength,
        SqlInfo::SqlMaxCharLiteralLength,
        SqlInfo::SqlMaxColumnNameLength,
        SqlInfo::SqlMaxColumnsInGroupBy,
        SqlInfo::SqlMaxColumnsInIndex,
        SqlInfo::SqlMaxColumnsInOrderBy,
        SqlInfo::SqlMaxColumnsInSelect,
        SqlInfo::SqlMaxColumnsInTable,
        SqlInfo::SqlMaxConnections,
        SqlInfo::SqlMaxCursorNameLength,
        SqlInfo::SqlMaxIndexLength,
        SqlInfo::SqlDbSchemaNameLength,
        SqlInfo::SqlMaxProcedureNameLength,
        SqlInfo::SqlMaxCatalogNameLength,
        SqlInfo::SqlMaxRowSize,
        SqlInfo::SqlMaxStatementLength,
        SqlInfo::SqlMaxStatements,
        SqlInfo::SqlMaxTableNameLength,
        SqlInfo::SqlMaxTablesInSelect,
        SqlInfo::SqlMaxUsernameLength,
    ] {
        // 0 means "no limit or unknown" in JDBC terms.
        b.append(info, 0i64);
    }
    b.append(SqlInfo::SqlMaxRowSizeIncludesBlobs, true);
    b.append(SqlInfo::SqlDefaultTransactionIsolation, SqlTransactionIsolationLevel::SqlTransactionSerializable as i32);
    b.append(SqlInfo::SqlTransactionsSupported, true);
    b.append(SqlInfo::SqlSupportedTransactionsIsolationLevels, 1i32 << SqlTransactionIsolationLevel::SqlTransactionSerializable as i32);
    b.append(SqlInfo::SqlDataDefinitionCausesTransactionCommit, false);
    b.append(SqlInfo::SqlDataDefinitionsInTransactionsIgnored, false);
    // Forward-only result sets.
    b.append(SqlInfo::SqlSupportedResultSetTypes, 1i32 << 1);
    for info in [
        SqlInfo::SqlSupportedConcurrenciesForResultSetUnspecified,
        SqlInfo::SqlSupportedConcurrenciesForResultSetForwardOnly,
        SqlInfo::SqlSupportedConcurrenciesForResultSetScrollSensitive,
        SqlInfo::SqlSupportedConcurrenciesForResultSetScrollInsensitive,
    ] {
        // Read-only concurrency.
        b.append(info, 1i32 << 1);
    }
    b.append(SqlInfo::SqlBatchUpdatesSupported, true);
    b.append(SqlInfo::SqlSavepointsSupported, false);
    b.append(SqlInfo::SqlNamedParametersSupported, true);
    b.append(SqlInfo::SqlLocatorsUpdateCopy, false);
    b.append(SqlInfo::SqlStoredFunctionsUsingCallSyntaxSupported, false);
    #[allow(clippy::expect_used)]
    b.build().expect("static SqlInfo data is valid")
}

fn xdbc(name: &str, dt: XdbcDataType, size: Option<i32>, prefix: Option<&str>, create: Option<&[&str]>, fixed: bool) -> XdbcTypeInfo {
    XdbcTypeInfo {
        type_name: name.to_string(),
        data_type: dt,
        column_size: size,
        literal_prefix: prefix.map(str::to_string),
        literal_suffix: prefix.map(str::to_string),
        create_params: create.map(|c| c.iter().map(|s| s.to_string()).collect()),
        nullable: Nullable::NullabilityNullable,
        case_sensitive: matches!(dt, XdbcDataType::XdbcVarchar),
        searchable: Searchable::Full,
        unsigned_attribute: Some(false),
        fixed_prec_scale: fixed,
        auto_increment: Some(false),
        local_type_name: Some(name.to_string()),
        minimum_scale: if fixed { Some(0) } else { None },
        maximum_scale: if fixed { Some(38) } else { None },
        sql_data_type: dt,
        datetime_subcode: None,
        num_prec_radix: if size.is_some() && prefix.is_none() { Some(10) } else { None },
        interval_precision: None,
    }
}

/// DuckDB's main types described for JDBC/ODBC-style clients.
pub fn xdbc_type_info() -> XdbcTypeInfoData {
    use XdbcDataType::*;
    let mut b = XdbcTypeInfoDataBuilder::new();
    for info in [
        xdbc("BOOLEAN", XdbcBit, Some(1), None, None, false),
        xdbc("TINYINT", XdbcTinyint, Some(3), None, None, false),
        xdbc("SMALLINT", XdbcSmallint, Some(5), None, None, false),
        xdbc("INTEGER", XdbcInteger, Some(10), None, None, false),
        xdbc("BIGINT", XdbcBigint, Some(19), None, None, false),
        xdbc("FLOAT", XdbcFloat, Some(7), None, None, false),
        xdbc("DOUBLE", XdbcDouble, Some(15), None, None, false),
        xdbc("DECIMAL", XdbcDecimal, Some(38), None, Some(&["precision", "scale"]), true),
        xdbc("VARCHAR", XdbcVarchar, None, Some("'"), None, false),
        xdbc("BLOB", XdbcVarbinary, None, Some("'"), None, false),
        xdbc("DATE", XdbcDate, Some(10), Some("'"), None, false),
        xdbc("TIME", XdbcTime, Some(15), Some("'"), None, false),
        xdbc("TIMESTAMP", XdbcTimestamp, Some(26), Some("'"), None, false),
        xdbc("TIMESTAMP WITH TIME ZONE", XdbcTimestamp, Some(32), Some("'"), None, false),
        xdbc("INTERVAL", XdbcInterval, None, Some("'"), None, false),
        xdbc("UUID", XdbcChar, Some(36), Some("'"), None, false),
    ] {
        b.append(info);
    }
    #[allow(clippy::expect_used)]
    b.build().expect("static xdbc data is valid")
}

pub fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

pub fn primary_keys_batch(keys: &[KeyColumn]) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let s = |f: fn(&KeyColumn) -> Option<String>| Arc::new(keys.iter().map(f).collect::<StringArray>()) as ArrayRef;
    RecordBatch::try_new(
        primary_keys_schema(),
        vec![
            s(|k| Some(k.catalog.clone())),
            s(|k| Some(k.schema.clone())),
            s(|k| Some(k.table.clone())),
            s(|k| Some(k.column.clone())),
            s(|k| k.key_name.clone()),
            Arc::new(keys.iter().map(|k| k.seq).collect::<Int32Array>()),
        ],
    )
}

pub fn foreign_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("pk_catalog_name", DataType::Utf8, true),
        Field::new("pk_db_schema_name", DataType::Utf8, true),
        Field::new("pk_table_name", DataType::Utf8, false),
        Field::new("pk_column_name", DataType::Utf8, false),
        Field::new("fk_catalog_name", DataType::Utf8, true),
        Field::new("fk_db_schema_name", DataType::Utf8, true),
        Field::new("fk_table_name", DataType::Utf8, false),
        Field::new("fk_column_name", DataType::Utf8, false),
        Field::new("key_sequence", DataType::Int32, false),
        Field::new("fk_key_name", DataType::Utf8, true),
        Field::new("pk_key_name", DataType::Utf8, true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]))
}

pub fn foreign_keys_batch(keys: &[ForeignKey]) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let s = |f: fn(&ForeignKey) -> Option<String>| Arc::new(keys.iter().map(f).collect::<StringArray>()) as ArrayRef;
    // DuckDB enforces foreign keys as RESTRICT / NO ACTION (3).
    let rule = || Arc::new(keys.iter().map(|_| 3u8).collect::<UInt8Array>()) as ArrayRef;
    RecordBatch::try_new(
        foreign_keys_schema(),
        vec![
            s(|k| Some(k.pk.catalog.clone())),
            s(|k| Some(k.pk.schema.clone())),
            s(|k| Some(k.pk.table.clone())),
            s(|k| Some(k.pk.column.clone())),
            s(|k| Some(k.fk.catalog.clone())),
            s(|k| Some(k.fk.schema.clone())),
            s(|k| Some(k.fk.table.clone())),
            s(|k| Some(k.fk.column.clone())),
            Arc::new(keys.iter().map(|k| k.fk.seq).collect::<Int32Array>()),
            s(|k| k.fk.key_name.clone()),
            s(|k| k.pk.key_name.clone()),
            rule(),
            rule(),
        ],
    )
}
