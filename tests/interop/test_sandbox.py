"""The statement sandbox under attack: a non-superuser (mallory) tries to escape her grants
through real clients (ADBC Flight SQL and HTTP) against a real `pond serve` of its own.

Every attack in ATTACKS runs over both protocols (those binding parameters over Flight only:
HTTP cannot bind) in a fresh session as mallory, and must
  1. fail, the way the server defines it (permission denied, no such table, parser error),
  2. leak nothing: no secret row value, no file or environment content, no data-directory
     path, no name of an object in a database mallory has no grant on,
  3. change nothing: an admin fingerprint of catalogs, data, global settings, extensions,
     users, grants and files is the same before and after.
Positive controls at the top show mallory can do what her grants allow, so the suite cannot
pass by denying everything.

An attack that succeeds stays a plain failing test: it is a finding, not an expectation.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.flight as flight
import pytest

import flight_proto as fp
from helpers import ADMIN, PASSWORD
from security_support import HttpApi, Outcome, adbc, run_flight, run_http, run_pg, start_dedicated, stop_dedicated

MARKER = "TOPSECRET-42"
MALLORY = "mallory"
MALLORY_PW = "mallory-Pw-27182818"
CANARY_VAR = "POND_SANDBOX_CANARY"
CANARY_VALUE = "canary-ENV-5b8f1c9e"
# Names of objects mallory may not see: none may appear in an answer unless she typed it.
HIDDEN_NAMES = ["secret", "secret_t", "hidden_kv", "hidden_child", "hidden_counter", "hidden_mood",
                "hidden_macro", "hidden_scalar", "hidden_const", "hidden_view", "hidden_priv", "mem_secret", "pond_system"]

PROTOCOLS = ["flight", "http"]
# The attacks also run over PostgreSQL wire (psycopg, simple query protocol).
ATTACK_PROTOCOLS = ["flight", "http", "pg"]

WORLD = f"""
CREATE DATABASE granted;
CREATE DATABASE secret;
CREATE DATABASE scratch;
CREATE DATABASE mixed;
CREATE TABLE secret.main.secret_t AS SELECT '{MARKER}' AS s, 42 AS n;
CREATE TABLE secret.main.hidden_kv (k INTEGER PRIMARY KEY, v VARCHAR);
INSERT INTO secret.main.hidden_kv VALUES (1, '{MARKER}');
USE secret;
CREATE TABLE hidden_child (id INTEGER, k INTEGER REFERENCES hidden_kv (k));
USE default;
CREATE SEQUENCE secret.main.hidden_counter START 100;
CREATE TYPE secret.main.hidden_mood AS ENUM ('{MARKER}', 'calm');
CREATE MACRO secret.main.hidden_macro() AS TABLE SELECT * FROM secret.main.secret_t;
CREATE MACRO secret.main.hidden_scalar(x) AS x || (SELECT s FROM secret.main.secret_t);
CREATE MACRO secret.main.hidden_const(x) AS x || '{MARKER}';
CREATE VIEW secret.main.hidden_view AS SELECT * FROM secret.main.secret_t;
CREATE TABLE granted.main.t AS SELECT range::INTEGER AS id, 'row' || range AS v FROM range(3);
CREATE VIEW granted.main.v AS SELECT * FROM granted.main.t WHERE id > 0;
CREATE VIEW granted.main.bridge AS SELECT * FROM secret.main.secret_t;
CREATE VIEW granted.main.bridge2 AS SELECT * FROM granted.main.bridge;
CREATE MACRO granted.main.gm(x) AS x + 1;
CREATE TABLE scratch.main.st (x VARCHAR);
CREATE SEQUENCE scratch.main.scratch_seq;
CREATE TABLE mixed.main.pub AS SELECT 1 AS a;
CREATE TABLE mixed.main.hidden_priv (p VARCHAR PRIMARY KEY);
INSERT INTO mixed.main.hidden_priv VALUES ('{MARKER}');
CREATE OR REPLACE TABLE memory.main.mem_secret AS SELECT '{MARKER}' AS m;
CREATE USER {MALLORY} PASSWORD '{MALLORY_PW}';
GRANT READ ON DATABASE granted TO {MALLORY};
GRANT READ, WRITE ON DATABASE scratch TO {MALLORY};
GRANT SELECT ON TABLE mixed.main.pub TO {MALLORY}
"""

TEARDOWN = f"""
DROP DATABASE IF EXISTS granted;
DROP DATABASE IF EXISTS secret;
DROP DATABASE IF EXISTS scratch;
DROP DATABASE IF EXISTS mixed;
DROP USER IF EXISTS {MALLORY};
DROP USER IF EXISTS eve
"""

# Global settings an escape could change (any other name is ignored if DuckDB lacks it).
WATCHED_SETTINGS = ["threads", "memory_limit", "max_memory", "enable_external_access", "allowed_directories",
                    "allowed_paths", "lock_configuration", "autoinstall_known_extensions", "autoload_known_extensions",
                    "temp_directory", "extension_directory", "allow_community_extensions", "allow_unsigned_extensions",
                    "custom_extension_repository", "default_order", "default_null_order", "TimeZone", "Calendar",
                    "errors_as_json", "enable_logging", "secret_directory", "allow_persistent_secrets"]

FINGERPRINT_SQL = f"""
SELECT
 (SELECT list(x ORDER BY x ASC NULLS LAST) FROM (
    SELECT database_name || '.' || schema_name || '.' || table_name || ':table:' || coalesce(comment, '') AS x
      FROM duckdb_tables() WHERE NOT temporary
    UNION ALL SELECT database_name || '.' || schema_name || '.' || view_name || ':view:' || sql
      FROM duckdb_views() WHERE NOT internal AND NOT temporary
    UNION ALL SELECT database_name || '.' || schema_name || '.' || sequence_name || ':seq:' || coalesce(last_value::VARCHAR, '-')
      FROM duckdb_sequences() WHERE NOT temporary
    UNION ALL SELECT database_name || '.' || schema_name || '.' || function_name || ':fn'
      FROM duckdb_functions() WHERE database_name NOT IN ('system', 'temp')
    UNION ALL SELECT database_name || '.' || schema_name || '.' || type_name || ':type'
      FROM duckdb_types() WHERE database_name NOT IN ('system', 'temp')
    UNION ALL SELECT database_name || '.' || schema_name || '.' || index_name || ':index'
      FROM duckdb_indexes()
    UNION ALL SELECT database_name || '.' || schema_name || ':schema'
      FROM duckdb_schemas() WHERE database_name NOT IN ('system', 'temp')
    UNION ALL SELECT database_name || ':db:' || coalesce(path, '') || ':' || readonly::VARCHAR
      FROM duckdb_databases() WHERE database_name NOT IN ('temp')
 )) AS catalog,
 (SELECT list(x ORDER BY x ASC NULLS LAST) FROM (SELECT database_name || '.' || table_name || '.' || column_name || ' ' || data_type AS x
    FROM duckdb_columns() WHERE database_name IN ('granted', 'secret', 'scratch', 'mixed'))) AS columns,
 (SELECT list(x ORDER BY x ASC NULLS LAST) FROM (SELECT name || '=' || coalesce(value, 'NULL') AS x FROM duckdb_settings()
    WHERE lower(name) IN ({", ".join("'" + s.lower() + "'" for s in WATCHED_SETTINGS)}))) AS settings,
 (SELECT list(x ORDER BY x ASC NULLS LAST) FROM (SELECT extension_name || ':' || loaded::VARCHAR || ':' || installed::VARCHAR AS x
    FROM duckdb_extensions())) AS extensions,
 (SELECT list(x ORDER BY x ASC NULLS LAST) FROM (SELECT s || '/' || n AS x FROM secret.main.secret_t)) AS secret_rows,
 (SELECT list(x ORDER BY x ASC NULLS LAST) FROM (SELECT k || '=' || v AS x FROM secret.main.hidden_kv)) AS kv_rows,
 (SELECT list(x ORDER BY x ASC NULLS LAST) FROM (SELECT id || '=' || v AS x FROM granted.main.t)) AS granted_rows,
 (SELECT list(x ORDER BY x ASC NULLS LAST) FROM (SELECT coalesce(x, 'NULL') AS x FROM scratch.main.st)) AS scratch_rows,
 (SELECT list(p ORDER BY p ASC NULLS LAST) FROM mixed.main.hidden_priv) AS priv_rows,
 (SELECT list(a ORDER BY a ASC NULLS LAST) FROM mixed.main.pub) AS pub_rows,
 (SELECT list(m ORDER BY m ASC NULLS LAST) FROM memory.main.mem_secret) AS memory_rows
"""


# ---------------------------------------------------------------- expectations

DENIED = "denied"  # HTTP 403 {"code": "permission_denied"}; Flight: "permission denied"
MISSING = "missing"  # HTTP 400 "… does not exist or you have no access to it"; Flight the same text
NOT_A_DATABASE = "not_a_database"  # HTTP 404 database_not_found; Flight "does not exist"
DENIED_OR_MISSING = "denied_or_missing"
REFUSED = "refused"  # any error; used where the server defines no specific answer
FILTERED = "filtered"  # a catalog listing: it answers, limited to what mallory may see (no hidden name leaks)


@dataclass(frozen=True)
class Attack:
    id: str
    steps: tuple[str, ...]
    expect: str = DENIED
    params: tuple | None = None  # bound to the last step (Flight only: HTTP cannot bind)
    # Over PostgreSQL wire this client-session setting (or PostgreSQL catalog relation)
    # is answered by the pg layer (PostgreSQL semantics; the catalog holds only what the
    # caller may see) without reaching DuckDB: success is fine if nothing changed or leaked.
    pg_local: bool = False

    @property
    def protocols(self) -> list[str]:
        return ["flight"] if self.params is not None else ATTACK_PROTOCOLS


def A(id: str, *steps: str, expect: str = DENIED, params: tuple | None = None, pg_local: bool = False) -> Attack:
    return Attack(id, tuple(steps), expect, params, pg_local)


SECRET = "secret.main.secret_t"

# Steps run in order in one session (over HTTP: one request, joined by ';'). Placeholders:
# @OUTSIDE@ a directory outside Pond's (holds leak.csv with the marker), @DATA@ the server's
# data directory, @HTTP@ its HTTP address, @SECRET_FILE@ the secret database's file.
ATTACKS = [
    # --- file and URL readers, by every spelling -------------------------------------------
    A("read_text_path", "SELECT * FROM read_text('/etc/passwd')"),
    A("read_text_as_scalar", "SELECT read_text('/etc/passwd')"),
    A("read_blob_path", "SELECT * FROM read_blob('/etc/passwd')"),
    A("read_csv_path", "SELECT * FROM read_csv('/etc/passwd', header = false)"),
    A("read_csv_auto_path", "SELECT * FROM read_csv_auto('/etc/passwd')"),
    A("read_json_path", "SELECT * FROM read_json('/etc/passwd')"),
    A("read_json_auto_path", "SELECT * FROM read_json_auto('/etc/passwd')"),
    A("read_parquet_path", "SELECT * FROM read_parquet('/etc/passwd')"),
    A("parquet_metadata_path", "SELECT * FROM parquet_metadata('/etc/passwd')"),
    A("parquet_schema_path", "SELECT * FROM parquet_schema('@OUTSIDE@/leak.parquet')"),
    A("glob_etc", "SELECT * FROM glob('/etc/*')"),
    A("glob_data_dir", "SELECT * FROM glob('@DATA@/**')"),
    A("sniff_csv_path", "SELECT * FROM sniff_csv('/etc/passwd')"),
    A("read_csv_outside_file", "SELECT * FROM read_csv('@OUTSIDE@/leak.csv')"),
    A("read_text_pond_metadata", "SELECT * FROM read_text('@DATA@/system/pond.json')"),
    A("read_blob_database_files", "SELECT * FROM read_blob('@DATA@/databases/*')"),
    A("read_text_http", "SELECT * FROM read_text('http://@HTTP@/health')"),
    A("read_csv_http", "SELECT * FROM read_csv('http://@HTTP@/metrics')"),
    A("read_json_http", "SELECT * FROM read_json('http://@HTTP@/health')"),
    A("read_parquet_http", "SELECT * FROM read_parquet('http://@HTTP@/x.parquet')"),
    A("read_text_quoted", "SELECT * FROM \"read_text\"('/etc/passwd')"),
    A("read_text_quoted_upper", "SELECT * FROM \"READ_TEXT\"('/etc/passwd')"),
    A("read_text_main", "SELECT * FROM main.read_text('/etc/passwd')"),
    A("read_text_system_main", "SELECT * FROM system.main.read_text('/etc/passwd')"),
    A("read_text_pg_catalog", "SELECT * FROM pg_catalog.read_text('/etc/passwd')"),
    A("read_csv_quoted_system", "SELECT * FROM \"system\".\"main\".\"read_csv\"('/etc/passwd')"),
    A("read_text_in_scalar_subquery", "SELECT (SELECT content FROM read_text('/etc/passwd'))"),
    A("read_csv_in_cte", "WITH x AS (SELECT * FROM read_csv_auto('/etc/passwd')) SELECT * FROM x"),
    A("read_text_in_lateral", "SELECT * FROM granted.main.t, LATERAL (SELECT content FROM read_text('/etc/passwd')) r"),
    # --- replacement scans ---------------------------------------------------------------
    A("scan_etc_passwd", "SELECT * FROM '/etc/passwd'", expect=MISSING),
    A("scan_relative_csv", "FROM 'x.csv'", expect=MISSING),
    A("scan_relative_parquet", "SELECT * FROM 'data.parquet'", expect=MISSING),
    A("scan_outside_csv", "SELECT * FROM '@OUTSIDE@/leak.csv'", expect=MISSING),
    A("scan_quoted_identifier_path", "SELECT * FROM \"@OUTSIDE@/leak.csv\"", expect=MISSING),
    A("scan_in_union", "SELECT v FROM granted.main.t UNION ALL SELECT * FROM '/etc/passwd'", expect=MISSING),
    A("scan_in_cte", "WITH x AS (FROM '@OUTSIDE@/leak.csv') SELECT * FROM x", expect=MISSING),
    # --- COPY, EXPORT, IMPORT ------------------------------------------------------------------
    A("copy_table_to_file", "COPY granted.main.t TO '@OUTSIDE@/copy_out.csv'"),
    A("copy_query_to_file", f"COPY (SELECT * FROM {SECRET}) TO '@OUTSIDE@/copy_secret.csv'"),
    A("copy_from_etc", "COPY scratch.main.st FROM '/etc/passwd'"),
    A("copy_from_outside", "COPY scratch.main.st FROM '@OUTSIDE@/leak.csv'"),
    A("export_database", "EXPORT DATABASE '@OUTSIDE@/export'"),
    A("import_database", "IMPORT DATABASE '@OUTSIDE@/prepared_export'"),
    # --- ATTACH, DETACH, USE -----------------------------------------------------------------
    A("attach_memory", "ATTACH ':memory:' AS scratchpad"),
    A("attach_new_file", "ATTACH '@OUTSIDE@/new.duckdb' AS newdb"),
    A("attach_secret_file_again", "ATTACH '@SECRET_FILE@' AS stolen (READ_ONLY)"),
    A("detach_secret", "DETACH secret"),
    A("detach_granted", "DETACH DATABASE granted"),
    A("use_secret", "USE secret"),
    A("use_secret_schema", "USE secret.main"),
    A("use_memory", "USE memory", expect=NOT_A_DATABASE),
    A("use_system", "USE system", expect=NOT_A_DATABASE),
    A("use_pond_system", "USE pond_system", expect=NOT_A_DATABASE),
    # --- extensions ------------------------------------------------------------------------------
    A("install_httpfs", "INSTALL httpfs"),
    A("force_install_httpfs", "FORCE INSTALL httpfs"),
    A("install_from_url", "INSTALL evil FROM 'http://@HTTP@/'"),
    A("load_httpfs", "LOAD httpfs"),
    A("load_file", "LOAD '@OUTSIDE@/evil.duckdb_extension'"),
    # --- settings ----------------------------------------------------------------------------------
    A("set_enable_external_access", "SET enable_external_access = true"),
    A("set_allowed_directories", "SET allowed_directories = ['/']"),
    A("set_allowed_paths", "SET allowed_paths = ['/etc/passwd']"),
    A("set_lock_configuration", "SET lock_configuration = false"),
    A("set_threads", "SET threads = 1"),
    A("set_memory_limit", "SET memory_limit = '1MB'"),
    A("set_global_timezone", "SET GLOBAL TimeZone = 'Asia/Tokyo'"),
    A("set_session_threads", "SET SESSION threads = 1"),
    A("set_search_path", "SET search_path = 'secret.main'", pg_local=True),
    A("set_schema", "SET schema = 'main'"),
    A("set_variable_from_secret", f"SET VARIABLE leak = (SELECT s FROM {SECRET})"),
    A("reset_threads", "RESET threads"),
    # DuckDB's parser rejects RESET ALL; any error is fine as long as nothing changes.
    A("reset_all", "RESET ALL", expect=REFUSED, pg_local=True),
    # Global in DuckDB (they would change every session's ORDER BY), so not allowed.
    A("set_default_order", "SET default_order = 'desc'"),
    A("set_default_null_order", "SET default_null_order = 'nulls_first'"),
    A("pragma_threads", "PRAGMA threads = 1"),
    A("pragma_memory_limit", "PRAGMA memory_limit = '1MB'"),
    A("set_config_function", "SELECT set_config('threads', '1', false)"),
    # --- secrets, environment, settings readers ---------------------------------------------------
    A("create_secret", "CREATE SECRET s3cred (TYPE s3, KEY_ID 'k', SECRET 'v')"),
    A("create_persistent_secret", "CREATE PERSISTENT SECRET p (TYPE http, BEARER_TOKEN 'x')"),
    A("which_secret", "SELECT which_secret('s3://bucket/x', 's3')"),
    A("getenv_home", "SELECT getenv('HOME')"),
    A("getenv_canary", f"SELECT getenv('{CANARY_VAR}')"),
    A("getenv_method_call", f"SELECT ('{CANARY_VAR}').getenv()"),
    A("getenv_quoted", f"SELECT \"GETENV\"('{CANARY_VAR}')"),
    A("current_setting", "SELECT current_setting('allowed_directories')"),
    A("current_setting_system_qualified", "SELECT system.main.current_setting('threads')"),
    # --- SQL-executing functions ------------------------------------------------------------------
    A("query_function", f"SELECT * FROM query('SELECT * FROM {SECRET}')"),
    A("query_table_function", f"SELECT * FROM query_table('{SECRET}')"),
    A("json_execute_serialized_sql", f"SELECT * FROM json_execute_serialized_sql(json_serialize_sql('SELECT * FROM {SECRET}'))"),
    A("json_serialize_sql", "SELECT json_serialize_sql('SELECT 1')"),
    # --- several statements in one string ------------------------------------------------------------
    A("multi_plain", f"SELECT 1; SELECT * FROM {SECRET}"),
    A("multi_after_block_comment", f"SELECT 1 /* ; */; SELECT * FROM {SECRET}"),
    A("multi_after_string", f"SELECT ';' AS x; SELECT * FROM {SECRET}"),
    A("multi_after_line_comment", f"SELECT 1 -- ;\n; SELECT * FROM {SECRET}"),
    A("multi_after_dollar_string", f"SELECT $$;$$ AS x; SELECT * FROM {SECRET}"),
    A("multi_after_escape_string", f"SELECT E'\\';' AS x; SELECT * FROM {SECRET}"),
    A("multi_comment_spans_statements", f"SELECT 1 /* */; SELECT * FROM {SECRET} -- */"),
    A("multi_in_transaction", "BEGIN", f"SELECT * FROM {SECRET}"),
    # DuckDB ends a `--` comment at a carriage return; a checker that ends it only at \n
    # sees one harmless statement where DuckDB runs two.
    A("cr_comment_hides_select", f"SET TimeZone = 'UTC' --\r; SELECT s FROM {SECRET}\n"),
    A("cr_comment_hides_insert_select",
      f"INSERT INTO scratch.main.st VALUES ('decoy') --\r; INSERT INTO scratch.main.st SELECT s FROM {SECRET}\n"),
    A("cr_comment_hides_drop", f"CREATE TEMP TABLE decoy (a INTEGER) --\r; DROP TABLE {SECRET}\n"),
    A("cr_comment_hides_set_threads", "SET TimeZone = 'UTC' --\r; SET threads = 1\n"),
    # --- CTEs and aliases ------------------------------------------------------------------------------
    A("cte_named_like_granted_table", f"WITH t AS (SELECT * FROM {SECRET}) SELECT * FROM t"),
    A("alias_named_like_granted_table", f"SELECT * FROM {SECRET} AS t"),
    A("cte_scope_reused_outside", "USE mixed",
      "SELECT * FROM (WITH hidden_priv AS (SELECT 1 AS p) SELECT * FROM hidden_priv) AS x, hidden_priv"),
    A("cte_scope_reused_outside_qualified",
      f"SELECT * FROM (WITH secret_t AS (SELECT 1 AS s) SELECT * FROM secret_t) AS a, {SECRET}"),
    A("cte_shadows_granted_table", "USE mixed", "WITH pub AS (SELECT * FROM hidden_priv) SELECT * FROM pub"),
    A("cte_unused_sibling", f"WITH a AS (SELECT 1 AS x), b AS (SELECT * FROM {SECRET}) SELECT * FROM a"),
    A("cte_recursive", f"WITH RECURSIVE r AS (SELECT s FROM {SECRET} UNION ALL SELECT s FROM r) SELECT * FROM r LIMIT 1"),
    A("cte_materialized", f"WITH a AS MATERIALIZED (SELECT * FROM {SECRET}) SELECT * FROM granted.main.t, a"),
    # --- views ----------------------------------------------------------------------------------------
    A("view_over_secret_in_granted_db", "SELECT * FROM granted.main.bridge"),
    A("view_over_view_over_secret", "SELECT * FROM granted.main.bridge2"),
    A("view_over_secret_unqualified", "USE granted", "SELECT * FROM bridge"),
    A("view_in_secret_db", "SELECT * FROM secret.main.hidden_view"),
    A("create_view_in_scratch_over_secret", f"CREATE VIEW scratch.main.mv AS SELECT * FROM {SECRET}"),
    A("create_temp_view_over_secret", f"CREATE TEMP VIEW tv AS SELECT * FROM {SECRET}"),
    A("replace_granted_view", "CREATE OR REPLACE VIEW granted.main.v AS SELECT 1 AS id"),
    # --- macros ---------------------------------------------------------------------------------------
    A("create_macro_in_scratch", f"CREATE MACRO scratch.main.m() AS TABLE SELECT * FROM {SECRET}"),
    A("create_temp_macro", "CREATE TEMP MACRO tm(x) AS x"),
    A("call_admin_table_macro", "SELECT * FROM secret.main.hidden_macro()"),
    A("call_admin_scalar_macro", "SELECT secret.main.hidden_scalar('a')"),
    A("call_admin_macro_in_granted_db", "USE granted", "SELECT gm(1)"),
    A("call_admin_macro_qualified", "SELECT granted.main.gm(1)"),
    # --- sequences --------------------------------------------------------------------------------------
    A("nextval_secret_sequence", "SELECT nextval('secret.main.hidden_counter')"),
    A("nextval_two_part_name", "SELECT nextval('secret.hidden_counter')"),
    A("nextval_quoted_name", "SELECT nextval('\"secret\".main.hidden_counter')"),
    A("currval_secret_sequence", "SELECT currval('secret.main.hidden_counter')"),
    A("setval_secret_sequence", "SELECT setval('secret.main.hidden_counter', 1)"),
    A("nextval_in_column_default", "CREATE TABLE scratch.main.seqleak (i BIGINT DEFAULT nextval('secret.main.hidden_counter'))"),
    # --- catalog functions and views ------------------------------------------------------------------
    A("duckdb_tables", "SELECT * FROM duckdb_tables()", expect=FILTERED),
    A("duckdb_databases", "SELECT * FROM duckdb_databases()", expect=FILTERED),
    A("duckdb_columns", "SELECT * FROM duckdb_columns()", expect=FILTERED),
    A("duckdb_views", "SELECT * FROM duckdb_views()", expect=FILTERED),
    A("duckdb_schemas", "SELECT * FROM duckdb_schemas()", expect=FILTERED),
    A("duckdb_tables_aliased_and_joined",
      "SELECT d.database_name, t.table_name FROM duckdb_databases() d JOIN duckdb_tables() t USING (database_name)", expect=FILTERED),
    A("information_schema_in_subquery",
      "SELECT (SELECT string_agg(table_catalog || '.' || table_name, ',') FROM information_schema.tables) AS names", expect=FILTERED),
    A("information_schema_in_view_in_scratch",
      "CREATE TEMP VIEW lv AS SELECT * FROM information_schema.tables", "SELECT * FROM lv", expect=DENIED_OR_MISSING),
    A("information_schema_views_definitions", "SELECT * FROM information_schema.views", expect=FILTERED),
    A("duckdb_tables_with_arguments", "SELECT * FROM duckdb_tables(1)"),
    A("duckdb_settings", "SELECT * FROM duckdb_settings()"),
    A("duckdb_functions", "SELECT * FROM duckdb_functions()"),
    A("duckdb_secrets", "SELECT * FROM duckdb_secrets()"),
    A("information_schema_tables", "SELECT * FROM information_schema.tables", expect=FILTERED),
    A("information_schema_columns", "SELECT * FROM information_schema.columns", expect=FILTERED),
    A("information_schema_schemata", "SELECT * FROM information_schema.schemata", expect=FILTERED),
    A("pg_catalog_pg_tables", "SELECT * FROM pg_catalog.pg_tables", expect=DENIED_OR_MISSING, pg_local=True),
    A("pg_tables_unqualified", "SELECT * FROM pg_tables", expect=DENIED_OR_MISSING, pg_local=True),
    A("system_information_schema", "SELECT * FROM system.information_schema.tables", expect=FILTERED),
    A("pragma_table_info_function", f"SELECT * FROM pragma_table_info('{SECRET}')"),
    A("pragma_table_info_statement", f"PRAGMA table_info('{SECRET}')"),
    A("pragma_show_tables", "PRAGMA show_tables"),
    A("call_pragma_table_info", f"CALL pragma_table_info('{SECRET}')"),
    A("describe_secret", f"DESCRIBE {SECRET}"),
    A("describe_with_temp_decoy", "CREATE TEMP TABLE secret_t (a INTEGER)", f"DESCRIBE {SECRET}"),
    A("summarize_secret", f"SUMMARIZE {SECRET}"),
    A("summarize_query", f"SUMMARIZE SELECT * FROM {SECRET}"),
    A("show_secret_table", f"SHOW {SECRET}"),
    A("show_all_tables", "SHOW ALL TABLES"),
    # --- the secret table in every corner of a query -----------------------------------------------------
    A("scalar_subquery", f"SELECT (SELECT s FROM {SECRET})"),
    A("exists_probe", f"SELECT 1 AS hit WHERE EXISTS (SELECT 1 FROM {SECRET} WHERE s LIKE 'TOP%')"),
    A("lateral_join", f"SELECT * FROM granted.main.t, LATERAL (SELECT s FROM {SECRET}) l"),
    A("union", f"SELECT v FROM granted.main.t UNION ALL SELECT s FROM {SECRET}"),
    A("join", f"SELECT * FROM granted.main.t JOIN {SECRET} ON true"),
    A("in_subquery", f"SELECT * FROM granted.main.t WHERE v IN (SELECT s FROM {SECRET})"),
    A("cast_error_oracle", f"SELECT CAST((SELECT s FROM {SECRET}) AS INTEGER)"),
    A("pivot_statement", f"PIVOT {SECRET} ON s"),
    A("pivot_subquery", f"SELECT * FROM (PIVOT {SECRET} ON s USING count(*))"),
    A("unpivot_subquery", f"SELECT * FROM (UNPIVOT {SECRET} ON COLUMNS(*) INTO NAME k VALUE val)"),
    A("explain_analyze", f"EXPLAIN ANALYZE SELECT * FROM {SECRET}"),
    A("explain", f"EXPLAIN SELECT * FROM {SECRET}"),
    A("explain_analyze_insert", f"EXPLAIN ANALYZE INSERT INTO scratch.main.st SELECT s FROM {SECRET}"),
    A("other_table_of_table_grant_db", "USE mixed", "SELECT * FROM hidden_priv"),
    A("other_table_of_table_grant_qualified", "SELECT * FROM mixed.main.hidden_priv"),
    A("insert_select_into_scratch", f"INSERT INTO scratch.main.st SELECT s FROM {SECRET}"),
    A("insert_cte_into_scratch", f"INSERT INTO scratch.main.st WITH x AS (SELECT s FROM {SECRET}) SELECT * FROM x"),
    A("update_from_subquery", f"UPDATE scratch.main.st SET x = (SELECT s FROM {SECRET})"),
    A("update_from_clause", f"UPDATE scratch.main.st SET x = s FROM {SECRET}"),
    A("delete_using", f"DELETE FROM scratch.main.st USING {SECRET} WHERE x = s"),
    A("create_table_as_secret", f"CREATE TABLE scratch.main.loot AS SELECT * FROM {SECRET}"),
    A("prepared_with_parameter", f"SELECT s FROM {SECRET} WHERE s <> ?", params=("x",)),
    A("prepared_query_function_parameter", "SELECT * FROM query(?)", params=(f"SELECT * FROM {SECRET}",)),
    A("prepared_read_text_parameter", "SELECT * FROM read_text(?)", params=("/etc/passwd",)),
    A("prepared_nextval_parameter", "SELECT nextval(?)", params=("secret.main.hidden_counter",)),
    # --- expressions the checker may not look at (temporary tables: nothing persists) --------------
    A("index_expression_runs_denied_function", "CREATE TEMP TABLE ix (id INTEGER)", "INSERT INTO ix VALUES (0)",
      "CREATE UNIQUE INDEX ix_u ON ix ((current_setting('allowed_directories')::VARCHAR || id::VARCHAR))",
      "INSERT INTO ix VALUES (0)"),
    A("index_expression_calls_admin_macro", "CREATE TEMP TABLE im (id INTEGER)", "INSERT INTO im VALUES (0)",
      "CREATE UNIQUE INDEX im_u ON im ((secret.main.hidden_const(id::VARCHAR)))", "INSERT INTO im VALUES (0)"),
    A("call_admin_constant_macro", "SELECT secret.main.hidden_const('a')"),
    A("set_value_runs_denied_function", "SET TimeZone = current_setting('allowed_directories')"),
    A("set_value_calls_admin_macro", "SET TimeZone = secret.main.hidden_const('x')"),
    A("set_value_nextval_secret_sequence", "SET TimeZone = nextval('secret.main.hidden_counter')::VARCHAR"),
    A("set_value_subquery", f"SET TimeZone = (SELECT s FROM {SECRET})", expect=REFUSED),
    A("upsert_set_subquery", "CREATE TEMP TABLE up (id INTEGER PRIMARY KEY, x VARCHAR)", "INSERT INTO up VALUES (1, 'a')",
      f"INSERT INTO up VALUES (1, 'b') ON CONFLICT (id) DO UPDATE SET x = (SELECT s FROM {SECRET})", expect=REFUSED),
    A("upsert_set_denied_function", "CREATE TEMP TABLE up (id INTEGER PRIMARY KEY, x VARCHAR)", "INSERT INTO up VALUES (1, 'a')",
      "INSERT INTO up VALUES (1, 'b') ON CONFLICT (id) DO UPDATE SET x = current_setting('allowed_directories')"),
    A("returning_subquery", "CREATE TEMP TABLE rt (x VARCHAR)",
      f"INSERT INTO rt VALUES ('a') RETURNING (SELECT s FROM {SECRET})", expect=REFUSED),
    A("returning_denied_function", "CREATE TEMP TABLE rt (x VARCHAR)",
      "INSERT INTO rt VALUES ('a') RETURNING current_setting('allowed_directories')"),
    A("default_subquery", f"CREATE TEMP TABLE df (x VARCHAR DEFAULT (SELECT s FROM {SECRET}))", expect=REFUSED),
    A("check_subquery", f"CREATE TEMP TABLE ck (x VARCHAR CHECK (x <> (SELECT s FROM {SECRET})))", expect=REFUSED),
    A("generated_column_denied_function",
      "CREATE TEMP TABLE gc (x VARCHAR, y VARCHAR GENERATED ALWAYS AS (current_setting('allowed_directories')))"),
    # --- writes with READ only, and into the secret database ----------------------------------------------
    A("update_granted", "UPDATE granted.main.t SET v = 'x'"),
    A("delete_granted", "DELETE FROM granted.main.t"),
    A("insert_granted", "INSERT INTO granted.main.t VALUES (9, 'x')"),
    A("upsert_granted", "INSERT OR REPLACE INTO granted.main.t VALUES (1, 'x')"),
    A("truncate_granted", "TRUNCATE granted.main.t"),
    A("create_table_in_granted", "CREATE TABLE granted.main.new_t (a INTEGER)"),
    A("create_view_in_granted", "CREATE VIEW granted.main.new_v AS SELECT 1 AS a"),
    A("create_schema_in_granted", "CREATE SCHEMA granted.evil"),
    A("create_index_in_granted", "CREATE INDEX idx ON granted.main.t (id)"),
    A("drop_granted_table", "DROP TABLE granted.main.t"),
    A("drop_granted_view", "DROP VIEW granted.main.bridge"),
    A("alter_granted_add_column", "ALTER TABLE granted.main.t ADD COLUMN z INTEGER"),
    A("alter_granted_rename", "ALTER TABLE granted.main.t RENAME TO t2"),
    A("comment_on_granted", "COMMENT ON TABLE granted.main.t IS 'owned'"),
    A("insert_into_select_only_table", "INSERT INTO mixed.main.pub VALUES (2)"),
    A("drop_secret_table", f"DROP TABLE {SECRET}"),
    A("delete_secret_rows", f"DELETE FROM {SECRET}"),
    A("replace_secret_table", f"CREATE OR REPLACE TABLE {SECRET} AS SELECT 1 AS s"),
    A("alter_secret_table", f"ALTER TABLE {SECRET} RENAME TO gone"),
    A("drop_secret_schema", "DROP SCHEMA secret.main CASCADE"),
    A("create_table_in_memory_catalog", "CREATE TABLE memory.main.mine (a INTEGER)"),
    A("checkpoint", "CHECKPOINT secret"),
    A("vacuum", f"VACUUM {SECRET}"),
    # --- databases, users, grants ------------------------------------------------------------------------------
    A("create_database", "CREATE DATABASE mine"),
    A("drop_database", "DROP DATABASE secret"),
    A("rename_database", "ALTER DATABASE secret RENAME TO stolen"),
    A("create_user", "CREATE USER eve PASSWORD 'eve-password-1'"),
    A("grant_self_database", f"GRANT READ ON DATABASE secret TO {MALLORY}"),
    A("grant_self_table", f"GRANT SELECT ON TABLE {SECRET} TO {MALLORY}"),
    A("grant_self_write", f"GRANT ALL ON DATABASE granted TO {MALLORY}"),
    A("create_role", "CREATE ROLE sneaky"),
    A("grant_admin_role_to_self", f"GRANT admin TO {MALLORY}"),
    A("drop_role", "DROP ROLE IF EXISTS anything"),
    A("revoke_from_admin", "REVOKE READ ON DATABASE granted FROM admin"),
    A("alter_admin_password", "ALTER USER admin PASSWORD 'hijacked-pw-1'"),
    A("make_self_superuser", f"ALTER USER {MALLORY} SUPERUSER"),
    A("rename_admin", "ALTER USER admin RENAME TO former_admin"),
    A("drop_admin", "DROP USER admin"),
    A("show_users", "SHOW USERS"),
    A("show_grants_for_admin", "SHOW GRANTS FOR admin"),
    # --- catalogs outside Pond's databases ---------------------------------------------------------------------
    A("audit_log", "SELECT * FROM pond_system.main.audit_log"),
    A("memory_catalog", "SELECT * FROM memory.main.mem_secret"),
    A("memory_catalog_quoted", "SELECT * FROM \"memory\".\"main\".\"mem_secret\""),
    A("temp_catalog_of_another_session", "SELECT * FROM temp.main.admin_tmp", expect=MISSING),
    # --- DuckDB error hints must not name hidden objects ---------------------------------------------------------
    A("did_you_mean_sequence", "SELECT nextval('scratch.main.hidden_counte')", expect=REFUSED),
    A("did_you_mean_type", "CREATE TEMP TABLE typed (a hidden_moo)", expect=REFUSED),
    # --- a temporary table named like a table function ------------------------------------------------------------
    A("shadowed_query_function_ctas", "CREATE TEMP TABLE query (x INTEGER)",
      f"CREATE TEMP TABLE loot AS SELECT * FROM query('SELECT s FROM {SECRET}')", "SELECT * FROM loot"),
    A("shadowed_query_table_insert", "CREATE TEMP TABLE query_table (x INTEGER)",
      f"INSERT INTO scratch.main.st SELECT s FROM query_table('{SECRET}')", "SELECT * FROM scratch.main.st"),
    A("shadowed_read_text_pond_metadata", "CREATE TEMP TABLE read_text (x INTEGER)",
      "CREATE TEMP TABLE loot AS SELECT content FROM read_text('@DATA@/system/pond.json')", "SELECT * FROM loot"),
    A("shadowed_read_blob_database_files", "CREATE TEMP TABLE read_blob (x INTEGER)",
      "CREATE TEMP TABLE loot AS SELECT regexp_extract(content::VARCHAR, 'TOPSECRET-[0-9]+') AS m "
      "FROM read_blob('@DATA@/databases/*')", "SELECT * FROM loot"),
    A("shadowed_duckdb_settings", "CREATE TEMP TABLE duckdb_settings (x INTEGER)",
      "CREATE TEMP TABLE loot AS SELECT name, value FROM duckdb_settings()", "SELECT * FROM loot"),
    A("shadowed_duckdb_databases", "CREATE TEMP TABLE duckdb_databases (x INTEGER)",
      "CREATE TEMP TABLE loot AS SELECT database_name, path FROM duckdb_databases()", "SELECT * FROM loot"),
    # The checker reads a view's query back from its text at the first " AS " after the
    # column list, which it ends at the first ')', even inside a quoted column name.
    A("view_column_list_hides_body", "CREATE TEMP TABLE query (x INTEGER)",
      f"CREATE TEMP VIEW lv(\"a) AS SELECT 1 AS q --\") AS SELECT * FROM query('SELECT s FROM {SECRET}')",
      "SELECT * FROM lv"),
]

assert len({a.id for a in ATTACKS}) == len(ATTACKS), "attack ids must be unique"
for _a in ATTACKS:
    assert MARKER not in "".join(_a.steps), f"{_a.id}: the attack text must not contain the marker itself"

CASES = [pytest.param(a, proto, id=f"{a.id}-{proto}") for a in ATTACKS for proto in a.protocols]


# ---------------------------------------------------------------- the world


@dataclass
class World:
    server: object
    api: HttpApi
    outside: Path
    data_dir: Path
    secret_file: str
    baseline_settings: dict = field(default_factory=dict)

    @property
    def mallory(self):
        return (MALLORY, MALLORY_PW)

    def substitute(self, sql: str) -> str:
        return (sql.replace("@OUTSIDE@", str(self.outside)).replace("@DATA@", str(self.data_dir))
                .replace("@HTTP@", self.server.http_addr).replace("@SECRET_FILE@", self.secret_file))

    def build(self) -> None:
        self.run_admin(TEARDOWN)
        self.run_admin(WORLD)

    def run_admin(self, script: str) -> None:
        r = self.api.query(script)
        assert r.status_code == 200, f"admin setup failed: {r.text[:2000]}"

    def fingerprint(self) -> dict:
        fp_ = {}
        r = self.api.query(FINGERPRINT_SQL)
        fp_["state"] = r.json()["data"] if r.status_code == 200 else f"ERROR {r.status_code}: {r.text[:500]}"
        fp_["users"] = [row[:2] for row in self.api.admin_rows("SHOW USERS")]
        fp_["grants"] = self.api.admin_rows("SHOW GRANTS")
        fp_["outside_files"] = sorted(str(p.relative_to(self.outside)) for p in self.outside.rglob("*"))
        fp_["data_files"] = sorted(
            str(p.relative_to(self.data_dir)) for p in self.data_dir.rglob("*")
            if not p.name.endswith(".wal") and "tmp" not in p.relative_to(self.data_dir).parts
        )
        return fp_

    def restore(self) -> None:
        """Puts everything back after an attack that changed something (so later cases stay meaningful)."""
        for name, value in self.baseline_settings.items():
            self.api.query(f"SET GLOBAL {name} = '{value}'")
        self.build()
        for p in sorted(self.outside.rglob("*"), reverse=True):
            if p.name not in ("leak.csv", "leak.parquet") and "prepared_export" not in p.parts:
                p.unlink() if p.is_file() else p.rmdir()


@pytest.fixture(scope="module")
def world(tmp_path_factory, ext_dir):
    server = start_dedicated(tmp_path_factory, ext_dir, "pond-sandbox", extra_env={CANARY_VAR: CANARY_VALUE})
    outside = tmp_path_factory.mktemp("sandbox-outside")
    (outside / "leak.csv").write_text(f"secret\n{MARKER}\n")
    api = HttpApi(server)
    w = World(server=server, api=api, outside=outside, data_dir=server.data_dir, secret_file="")
    w.build()
    baseline = w.fingerprint()
    assert isinstance(baseline["state"], list), f"the admin fingerprint query must work: {baseline['state']}"
    w.secret_file = api.admin_rows("SELECT path FROM duckdb_databases() WHERE database_name = 'secret'")[0][0]
    w.baseline_settings = {
        name: value for name, value in api.admin_rows(
            "SELECT name, value FROM duckdb_settings() WHERE name IN ('threads', 'memory_limit', 'default_order', "
            "'default_null_order', 'TimeZone', 'Calendar', 'errors_as_json')")
    }
    # An export IMPORT DATABASE could load (it would create a table).
    (outside / "prepared_export").mkdir()
    (outside / "prepared_export" / "schema.sql").write_text(f"CREATE TABLE imported AS SELECT '{MARKER}' AS x;\n")
    (outside / "prepared_export" / "load.sql").write_text("")
    yield w
    stop_dedicated(server)


def markers(world: World, attack_text: str) -> list[str]:
    """Strings that must not appear in any answer to this attack."""
    out = [MARKER, "root:x:0:0", CANARY_VALUE, "$argon2", PASSWORD, MALLORY_PW]
    if str(world.data_dir) not in attack_text:
        out.append(str(world.data_dir))
    return out


def hidden_names_in(text: str, attack_text: str) -> list[str]:
    lowered = attack_text.lower()
    found = []
    for name in HIDDEN_NAMES:
        if name in lowered:
            continue
        if re.search(rf"(?<![a-z0-9_]){re.escape(name)}(?![a-z0-9_])", text, re.IGNORECASE):
            found.append(name)
    return found


def assert_refused(out: Outcome, expect: str, proto: str) -> None:
    assert not out.ok, f"ESCAPE: the attack succeeded over {proto}: {out.short()}"
    text = out.text
    if proto == "http":
        if expect == DENIED:
            assert (out.status, out.code) == (403, "permission_denied"), out.short()
            assert "permission denied" in text, out.short()
        elif expect == MISSING:
            assert out.status == 400 and "does not exist or you have no access to it" in text, out.short()
        elif expect == NOT_A_DATABASE:
            assert (out.status, out.code) == (404, "database_not_found"), out.short()
        elif expect == DENIED_OR_MISSING:
            assert ((out.status, out.code) == (403, "permission_denied")
                    or (out.status == 400 and "does not exist or you have no access to it" in text)), out.short()
        else:
            assert out.status is not None and 400 <= out.status < 500, out.short()
    else:
        if expect == DENIED:
            assert "permission denied" in text.lower(), out.short()
        elif expect == MISSING:
            assert "does not exist or you have no access to it" in text, out.short()
        elif expect == NOT_A_DATABASE:
            assert "does not exist" in text, out.short()
        elif expect == DENIED_OR_MISSING:
            assert "permission denied" in text.lower() or "does not exist or you have no access to it" in text, out.short()


def run_attack(world: World, attack: Attack, proto: str) -> Outcome:
    steps = [world.substitute(s) for s in attack.steps]
    if proto == "http":
        return run_http(world.api, world.mallory, steps)
    if proto == "pg":
        return run_pg(world.server, MALLORY, MALLORY_PW, steps)
    conn = adbc(world.server, user=MALLORY, password=MALLORY_PW)
    try:
        return run_flight(conn, steps, attack.params)
    finally:
        conn.close()


# ---------------------------------------------------------------- positive controls


def mallory_rows(world: World, proto: str, steps: list[str], params=None):
    """Runs steps as mallory; returns the last step's rows as lists."""
    if proto == "http":
        r = world.api.query(";\n".join(steps), world.mallory)
        assert r.status_code == 200, r.text
        return [list(row) for row in r.json()["data"]]
    conn = adbc(world.server, user=MALLORY, password=MALLORY_PW)
    try:
        with conn.cursor() as cur:
            for i, s in enumerate(steps):
                if i == len(steps) - 1 and params is not None:
                    cur.execute(s, params)
                else:
                    cur.execute(s)
                rows = cur.fetchall()
        return [list(r) for r in rows]
    finally:
        conn.close()


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_control_reads_granted_table_and_view(world, proto):
    assert mallory_rows(world, proto, ["SELECT id, v FROM granted.main.t ORDER BY id ASC"]) == [[0, "row0"], [1, "row1"], [2, "row2"]]
    assert mallory_rows(world, proto, ["SELECT count(*) FROM granted.main.v"]) == [[2]]
    assert mallory_rows(world, proto, ["USE granted", "SELECT max(id) FROM t"]) == [[2]]
    assert mallory_rows(world, proto, ["SELECT a FROM mixed.main.pub"]) == [[1]]
    # A CTE named like a real table is fine when it reads what mallory may read.
    assert mallory_rows(world, proto, ["USE mixed", "WITH hidden_priv AS (SELECT * FROM pub) SELECT * FROM hidden_priv"]) == [[1]]
    # Joins, subqueries, generators and scalar functions of her own data.
    rows = mallory_rows(world, proto, ["SELECT upper(t.v), r.range FROM granted.main.t t JOIN range(3) r ON t.id = r.range "
                                       "WHERE t.id IN (SELECT id FROM granted.main.v) ORDER BY 2 ASC"])
    assert rows == [["ROW1", 1], ["ROW2", 2]]


def test_control_prepared_statement_with_parameter(world):
    assert mallory_rows(world, "flight", ["SELECT v FROM granted.main.t WHERE id = ?"], params=(2,)) == [["row2"]]


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_control_show_databases_lists_only_granted(world, proto):
    names = {r[0] for r in mallory_rows(world, proto, ["SHOW DATABASES"])}
    assert names == {"granted", "scratch", "mixed"}


def test_control_http_database_listing(world):
    r = world.api.request("GET", "/api/v1/databases", world.mallory)
    assert r.status_code == 200, r.text
    assert {d["name"] for d in r.json()["databases"]} == {"granted", "scratch", "mixed"}


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_control_show_tables_is_filtered(world, proto):
    assert {r[0] for r in mallory_rows(world, proto, ["USE granted", "SHOW TABLES"])} == {"t", "v", "bridge", "bridge2"}
    assert [r[0] for r in mallory_rows(world, proto, ["USE mixed", "SHOW TABLES"])] == ["pub"]


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_control_session_settings_and_temp_tables(world, proto):
    rows = mallory_rows(world, proto, ["SET TimeZone = 'Asia/Tokyo'", "SELECT strftime(TIMESTAMPTZ '2024-01-01 00:00:00+00', '%H')"])
    assert rows == [["09"]]
    rows = mallory_rows(world, proto, ["CREATE TEMP TABLE mine AS SELECT 41 AS x", "INSERT INTO mine VALUES (1)",
                                       "SELECT sum(x) FROM mine"])
    assert rows == [[42]]


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_control_writes_where_granted(world, proto):
    name = f"own_{proto}"
    try:
        rows = mallory_rows(world, proto, [f"CREATE TABLE scratch.main.{name} (i BIGINT DEFAULT nextval('scratch.main.scratch_seq'), s VARCHAR)",
                                           f"INSERT INTO scratch.main.{name} (s) SELECT v FROM granted.main.t",
                                           f"UPDATE scratch.main.{name} SET s = upper(s) WHERE s = 'row1'",
                                           f"DELETE FROM scratch.main.{name} WHERE s = 'row2'",
                                           f"SELECT s FROM scratch.main.{name} ORDER BY s ASC"])
        assert rows == [["ROW1"], ["row0"]]
        mallory_rows(world, proto, [f"CREATE VIEW scratch.main.{name}_v AS SELECT s FROM scratch.main.{name}",
                                    f"SELECT count(*) FROM scratch.main.{name}_v"])
    finally:
        world.api.admin_rows(f"DROP VIEW IF EXISTS scratch.main.{name}_v")
        world.api.admin_rows(f"DROP TABLE IF EXISTS scratch.main.{name}")


@pytest.mark.parametrize("setting,value", [("TimeZone", "Asia/Tokyo"), ("Calendar", "japanese")])
@pytest.mark.parametrize("proto", PROTOCOLS)
def test_allowed_settings_stay_in_the_session(world, proto, setting, value):
    """The SET options non-superusers may use must not change other users' sessions."""
    before = world.fingerprint()
    if proto == "http":
        r = world.api.query(f"SET {setting} = '{value}'", world.mallory)
        assert r.status_code == 200, r.text
    else:
        conn = adbc(world.server, user=MALLORY, password=MALLORY_PW)
        try:
            with conn.cursor() as cur:
                cur.execute(f"SET {setting} = '{value}'")
        finally:
            conn.close()
    after = world.fingerprint()
    if after != before:
        world.restore()
    assert after["state"] == before["state"], f"SET {setting} by {MALLORY} changed a global setting:\n{diff(before, after)}"


# ---------------------------------------------------------------- the attacks


def diff(before: dict, after: dict) -> str:
    lines = []
    for key in before:
        b, a = before[key], after.get(key)
        if b == a:
            continue
        if key == "state" and isinstance(a, str):
            lines.append(f"  state: the admin fingerprint query now fails: {a[:400]}")
        elif key == "state" and isinstance(b, list) and isinstance(a, list):
            names = ["catalog", "columns", "settings", "extensions", "secret_rows", "kv_rows",
                     "granted_rows", "scratch_rows", "priv_rows", "pub_rows", "memory_rows"]
            for n, x, y in zip(names, b[0], a[0]):
                if x != y:
                    xs, ys = set(map(str, x or [])), set(map(str, y or []))
                    lines.append(f"  {n}: removed {sorted(xs - ys)[:10]} added {sorted(ys - xs)[:10]}")
        else:
            lines.append(f"  {key}: {json.dumps(b)[:400]} -> {json.dumps(a)[:400]}")
    return "\n".join(lines)


@pytest.mark.parametrize("attack,proto", CASES)
def test_attack(world, attack: Attack, proto: str):
    before = world.fingerprint()
    out = run_attack(world, attack, proto)
    after = world.fingerprint()
    changed = after != before
    if changed:
        world.restore()
    attack_text = world.substitute(" ".join(attack.steps)) + " " + " ".join(map(str, attack.params or ()))
    leaked = [m for m in markers(world, attack_text) if m in out.text]
    assert not leaked, f"LEAK over {proto}: {leaked} in the answer: {out.short()}"
    names = hidden_names_in(out.text, attack_text)
    assert not names, f"LEAK over {proto}: hidden object names {names} in the answer: {out.short()}"
    assert not changed, f"the attack changed server state over {proto} (restored):\n{diff(before, after)}\nanswer: {out.short()}"
    if proto == "pg" and attack.pg_local and out.ok:
        return
    if attack.expect == FILTERED:
        assert out.ok, f"the limited catalog listing failed over {proto}: {out.short()}"
        assert "granted" in out.text, f"the listing lost what mallory may see: {out.short()}"
        return
    assert_refused(out, attack.expect, proto)


# ---------------------------------------------------------------- protocol-level attacks


def test_http_database_field_selects_no_hidden_database(world):
    for db, statuses in [("secret", {403}), ("pond_system", {403, 404}), ("memory", {403, 404}), ("system", {403, 404})]:
        r = world.api.query("SELECT 1", world.mallory, database=db)
        assert r.status_code in statuses, (db, r.status_code, r.text)
        assert MARKER not in r.text


@pytest.mark.parametrize("db", ["secret", "pond_system", "memory"])
def test_flight_database_header_selects_no_hidden_database(world, db):
    conn = adbc(world.server, user=MALLORY, password=MALLORY_PW, database=db)
    try:
        out = run_flight(conn, ["SELECT current_database()"])
    finally:
        conn.close()
    assert not out.ok, out.short()
    assert "permission denied" in out.text.lower() or "does not exist" in out.text, out.short()


def _raw_client(world: World, user: str, password: str):
    client = flight.FlightClient(world.server.flight_uri)
    auth = client.authenticate_basic_token(user, password)
    return client, flight.FlightCallOptions(headers=[auth])


def _raw_sql(client, options, text: str):
    info = client.get_flight_info(flight.FlightDescriptor.for_command(fp.statement_query(text)), options)
    return info, [r for ep in info.endpoints for r in client.do_get(ep.ticket, options).read_all().to_pylist()]


def test_flight_session_option_cannot_select_hidden_database(world):
    """SetSessionOptions(catalog) is another way to say USE: the same grants apply."""
    client, options = _raw_client(world, MALLORY, MALLORY_PW)
    try:
        try:
            results = list(client.do_action(flight.Action("SetSessionOptions", fp.set_session_options_request({"catalog": "secret"})), options))
            errors = fp.parse_fields(results[0].body.to_pybytes()).get(1, []) if results else []
        except (flight.FlightError, pa.ArrowException) as e:
            errors = [str(e)]
        _, rows = _raw_sql(client, options, "SELECT current_database() AS db")
        assert rows != [{"db": "secret"}], f"{MALLORY} made the hidden database current (errors reported: {errors})"
        assert errors, "SetSessionOptions(catalog=secret) must report an error"
    finally:
        client.close()


def test_flight_ticket_of_another_session_is_refused(world):
    """A ticket is bound to the session that made it: mallory cannot redeem admin's."""
    admin, admin_opts = _raw_client(world, ADMIN, PASSWORD)
    client, options = _raw_client(world, MALLORY, MALLORY_PW)
    try:
        info = admin.get_flight_info(flight.FlightDescriptor.for_command(fp.statement_query(f"SELECT s FROM {SECRET}")), admin_opts)
        ticket = info.endpoints[0].ticket
        with pytest.raises((flight.FlightError, pa.ArrowException)) as ei:
            client.do_get(ticket, options).read_all()
        assert MARKER not in str(ei.value)
        assert admin.do_get(ticket, admin_opts).read_all().to_pylist() == [{"s": MARKER}]
    finally:
        client.close()
        admin.close()


DOPUT_UPDATES = {
    "drop_secret_table": f"DROP TABLE {SECRET}",
    "insert_read_only_table": "INSERT INTO granted.main.t VALUES (9, 'x')",
    "insert_select_secret": f"INSERT INTO scratch.main.st SELECT s FROM {SECRET}",
    "cr_comment_hides_drop": f"SET TimeZone = 'UTC' --\r; DROP TABLE {SECRET}\n",
}


@pytest.mark.parametrize("name", list(DOPUT_UPDATES))
def test_flight_doput_update_is_checked(world, name):
    """CommandStatementUpdate (DoPut) runs through the same checks as queries."""
    before = world.fingerprint()
    client, options = _raw_client(world, MALLORY, MALLORY_PW)
    error = None
    try:
        descriptor = flight.FlightDescriptor.for_command(fp.statement_update(DOPUT_UPDATES[name]))
        writer, reader = client.do_put(descriptor, pa.schema([]), options)
        writer.done_writing()
        reader.read()
        writer.close()
    except (flight.FlightError, pa.ArrowException) as e:
        error = str(e)
    finally:
        client.close()
    after = world.fingerprint()
    if after != before:
        world.restore()
    assert after == before, f"DoPut update changed server state (restored):\n{diff(before, after)}"
    assert error is not None, "the update succeeded"
    assert "permission denied" in error.lower(), error


INGEST_ATTACKS = [
    ("append_secret", "secret_t", "secret", "append"),
    ("replace_secret", "secret_t", "secret", "replace"),
    ("create_in_secret", "new_t", "secret", "create"),
    ("append_read_only_table", "t", "granted", "append"),
    ("replace_read_only_table", "t", "granted", "replace"),
    ("create_in_read_only_db", "new_t", "granted", "create"),
    ("append_other_table_of_table_grant", "hidden_priv", "mixed", "append"),
    ("create_in_memory_catalog", "new_t", "memory", "create"),
]


@pytest.mark.parametrize("name,table,catalog,mode", INGEST_ATTACKS, ids=[a[0] for a in INGEST_ATTACKS])
def test_flight_bulk_ingest_is_checked(world, name, table, catalog, mode):
    before = world.fingerprint()
    conn = adbc(world.server, user=MALLORY, password=MALLORY_PW)
    data = pa.table({"s": ["ingested"], "n": [1]}) if catalog == "secret" else pa.table({"id": [9], "v": ["x"]})
    if table == "hidden_priv":
        data = pa.table({"p": ["x"]})
    error = None
    try:
        with conn.cursor() as cur:
            cur.adbc_ingest(table, data, mode=mode, catalog_name=catalog, db_schema_name="main")
    except Exception as e:  # noqa: BLE001 - any driver error is the outcome
        error = str(e)
    finally:
        conn.close()
    after = world.fingerprint()
    if after != before:
        world.restore()
    assert after == before, diff(before, after)
    assert error is not None, "the ingest succeeded"
    assert "permission denied" in error.lower() or "does not exist" in error, error


def _get_tables(catalog: str | None = None, include_schema: bool = True) -> bytes:
    payload = b""
    if catalog is not None:
        payload += fp.field_bytes(1, catalog.encode())
    if include_schema:
        payload += fp.field_varint(5, 1)
    return fp.any_msg("CommandGetTables", payload)


def _raw_metadata(world: World) -> dict[str, str]:
    client = flight.FlightClient(world.server.flight_uri)
    try:
        auth = client.authenticate_basic_token(MALLORY, MALLORY_PW)
        options = flight.FlightCallOptions(headers=[auth])

        def fetch(command: bytes) -> str:
            try:
                info = client.get_flight_info(flight.FlightDescriptor.for_command(command), options)
                tables = [client.do_get(ep.ticket, options).read_all() for ep in info.endpoints]
                rows = [r for t in tables for r in t.to_pylist()]
                # Field metadata of GetTables' table_schema column carries names too.
                return json.dumps(rows, default=lambda b: b.decode("latin-1") if isinstance(b, bytes) else str(b))
            except (flight.FlightError, pa.ArrowException) as e:
                return f"ERROR {type(e).__name__}: {e}"

        return {
            "catalogs": fetch(fp.get_catalogs()),
            "schemas": fetch(fp.get_db_schemas()),
            "schemas_secret": fetch(fp.get_db_schemas("secret")),
            "tables": fetch(_get_tables()),
            "tables_secret": fetch(_get_tables("secret")),
            "tables_mixed": fetch(_get_tables("mixed")),
            "pk_secret": fetch(fp.get_primary_keys("hidden_kv", "secret", "main")),
            "pk_mixed": fetch(fp.get_primary_keys("hidden_priv", "mixed", "main")),
            "exported_secret": fetch(fp.get_exported_keys("hidden_kv", "secret", "main")),
            "imported_secret": fetch(fp.get_imported_keys("hidden_child", "secret", "main")),
            "cross_secret": fetch(fp.get_cross_reference("hidden_kv", "hidden_child", "secret", "main")),
        }
    finally:
        client.close()


def test_flight_metadata_hides_what_mallory_cannot_use(world):
    meta = _raw_metadata(world)
    catalogs = {r["catalog_name"] for r in json.loads(meta["catalogs"])}
    assert catalogs == {"granted", "scratch", "mixed"}, meta["catalogs"]
    schemas = {r["catalog_name"] for r in json.loads(meta["schemas"])}
    assert schemas == {"granted", "scratch", "mixed"}, meta["schemas"]
    tables = {(r["catalog_name"], r["table_name"]) for r in json.loads(meta["tables"])}
    assert tables == {("granted", "t"), ("granted", "v"), ("granted", "bridge"), ("granted", "bridge2"),
                      ("scratch", "st"), ("mixed", "pub")}, tables
    for key, text in meta.items():
        leaked = [n for n in HIDDEN_NAMES if re.search(rf"(?<![a-z0-9_]){n}(?![a-z0-9_])", text)]
        if key.endswith("_secret") or key == "pk_mixed":
            # The request itself names the hidden object; the answer must be empty or an error.
            assert text.startswith("ERROR") or json.loads(text) == [], f"{key}: {text[:1000]}"
        else:
            assert not leaked, f"{key} names hidden objects {leaked}: {text[:1500]}"
        assert MARKER not in text


def test_adbc_metadata_hides_what_mallory_cannot_use(world):
    conn = adbc(world.server, user=MALLORY, password=MALLORY_PW)
    try:
        objects = conn.adbc_get_objects().read_all().to_pylist()
        text = json.dumps(objects, default=str)
        assert {o["catalog_name"] for o in objects} == {"granted", "scratch", "mixed"}, text[:1500]
        leaked = [n for n in HIDDEN_NAMES if re.search(rf"(?<![a-z0-9_]){n}(?![a-z0-9_])", text)]
        assert not leaked, f"adbc_get_objects names hidden objects {leaked}: {text[:1500]}"
        secret_objects = conn.adbc_get_objects(catalog_filter="secret").read_all().to_pylist()
        assert secret_objects == [], secret_objects
        for table, catalog in [("secret_t", "secret"), ("hidden_priv", "mixed"), ("audit_log", "pond_system")]:
            with pytest.raises(Exception):
                schema = conn.adbc_get_table_schema(table, catalog_filter=catalog, db_schema_filter="main")
                pytest.fail(f"schema of {catalog}.main.{table} visible to {MALLORY}: {schema}")
    finally:
        conn.close()


def test_denials_are_audited(world):
    """Runs last: every denied attack left an audit row naming mallory, over both protocols."""
    deadline = time.monotonic() + 10
    while True:
        rows = world.api.admin_rows(
            f"SELECT protocol, count(*) FROM pond_system.main.audit_log WHERE kind = 'denied' AND user_name = '{MALLORY}' GROUP BY ALL")
        counts = dict(rows)
        if (counts.get("flight", 0) > 20 and counts.get("http", 0) > 20) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert counts.get("flight", 0) > 20 and counts.get("http", 0) > 20, counts
    details = world.api.admin_rows(f"SELECT detail FROM pond_system.main.audit_log WHERE user_name = '{MALLORY}'")
    text = json.dumps(details)
    assert MARKER not in text and MALLORY_PW not in text


# ---------------------------------------------------------------- time-series lake and buffers


def _lp(world: World, db: str, body: str) -> None:
    r = world.api.s.post(f"{world.api.base}/write?db={db}", data=body.encode(), auth=(ADMIN, PASSWORD), timeout=60)
    assert r.status_code == 204, r.text


@pytest.mark.parametrize("proto", ATTACK_PROTOCOLS)
def test_measurements_lake_and_buffers_stay_hidden(world, proto):
    """A READ user on one database reads its measurements but neither another database's
    measurements, lake schema or buffer, nor her own database's lake or buffer directly;
    a table grant on one measurement reads that one and not another."""
    a, b = f"lake_a_{proto}", f"lake_b_{proto}"
    world.api.admin_rows(f"CREATE DATABASE IF NOT EXISTS {a}")
    world.api.admin_rows(f"CREATE DATABASE IF NOT EXISTS {b}")
    _lp(world, f"{a}", "cpu,host=a v=1 1\nmem v=5 1")
    _lp(world, f"{b}", f"cpu,host=b msg=\"{MARKER}\" 1")
    r = world.api.s.post(f"{world.api.base}/api/v1/lake/flush", auth=(ADMIN, PASSWORD), timeout=60)
    assert r.status_code == 200, r.text
    _lp(world, f"{a}", "cpu,host=a v=2 2")
    _lp(world, f"{b}", f"cpu,host=b msg=\"{MARKER}\" 2")
    world.api.admin_rows(f"GRANT READ ON DATABASE {a} TO {MALLORY}")
    ids = {r[0]: Path(r[1]).stem for r in world.api.admin_rows(
        f"SELECT database_name, path FROM duckdb_databases() WHERE database_name IN ('{a}', '{b}')")}
    # Control: her own database's measurement, lake and buffer rows together.
    if proto != "pg":
        assert mallory_rows(world, proto, [f"SELECT count(*), sum(v)::INT FROM {a}.cpu"]) == [[2, 3]]
    attacks = [
        f"SELECT * FROM {b}.cpu",
        f"SELECT * FROM {b}._pond_buffer.cpu",
        f"SELECT * FROM {a}._pond_buffer.cpu",
        f"SELECT * FROM __pond_lake.\"{ids[b]}\".cpu",
        f"SELECT * FROM __pond_lake.\"{ids[a]}\".cpu",
        "SELECT * FROM __ducklake_metadata___pond_lake.main.ducklake_data_file",
        "SELECT * FROM ducklake_table_info('__pond_lake')",
        f"SELECT * FROM ducklake_list_files('__pond_lake', 'cpu', schema => '{ids[b]}')",
        f"CREATE TABLE {a}._pond_buffer.x (i INTEGER)",
        f"DELETE FROM {a}._pond_buffer.cpu",
        # The hot rows' table function: only measurement views may call it.
        f"SELECT * FROM pond_hot('{ids[b]}', 'cpu')",
        f"SELECT * FROM {a}.cpu UNION ALL BY NAME SELECT * FROM system.main.pond_hot('{ids[b]}', 'cpu')",
        f"SELECT (SELECT max(msg) FROM pond_hot('{ids[b]}', 'cpu'))",
        f"CREATE VIEW {a}.main.peek AS SELECT * FROM pond_hot('{ids[b]}', 'cpu')",
    ]
    for text in attacks:
        out = run_attack(world, A("lake", text), proto)
        assert not out.ok, f"{text} over {proto}: {out.short()}"
        assert MARKER not in out.text, f"LEAK over {proto}: {out.short()}"
    # Listings name neither the buffer schema nor the lake.
    if proto != "pg":
        for listing in ["SELECT schema_name FROM information_schema.schemata",
                        "SELECT database_name || '.' || schema_name FROM duckdb_schemas()",
                        "SELECT database_name FROM duckdb_databases()",
                        "SELECT table_catalog || '.' || table_schema || '.' || table_name FROM information_schema.tables"]:
            text = json.dumps(mallory_rows(world, proto, [listing]))
            assert "_pond_buffer" not in text and f"{b}" not in text and "__pond_lake" not in text, (listing, text)
    # A table grant on one measurement: that one, not another.
    world.api.admin_rows(f"REVOKE READ ON DATABASE {a} FROM {MALLORY}")
    world.api.admin_rows(f"GRANT SELECT ON TABLE {a}.main.cpu TO {MALLORY}")
    try:
        if proto != "pg":
            assert mallory_rows(world, proto, [f"SELECT count(*) FROM {a}.main.cpu"]) == [[2]]
        out = run_attack(world, A("lake", f"SELECT * FROM {a}.main.mem"), proto)
        assert not out.ok, out.short()
        r = world.api.s.get(f"{world.api.base}/api/v1/measurements", auth=(MALLORY, MALLORY_PW), timeout=30)
        assert [(m["database"], m["name"]) for m in r.json()["measurements"]] == [(f"{a}", "cpu")], r.text
    finally:
        world.api.admin_rows(f"REVOKE SELECT ON TABLE {a}.main.cpu FROM {MALLORY}")
