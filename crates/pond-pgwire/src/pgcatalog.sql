-- Pond's PostgreSQL catalog (see pgcatalog.rs). Raw facts go into the pond_*
-- tables; everything PostgreSQL clients read is a view or macro over them.
-- OIDs: tables, views, schemas and indexes keep DuckDB's; primary-key and
-- unique constraints get an index 2000000000 + table * 1000 + n and every
-- constraint the OID 3000000000 + table * 1000 + n.

CREATE TYPE name AS VARCHAR;
CREATE TYPE regproc AS VARCHAR;
CREATE TYPE regprocedure AS VARCHAR;
CREATE TYPE regoper AS VARCHAR;
CREATE TYPE regrole AS BIGINT;
CREATE TYPE pg_node_tree AS VARCHAR;
CREATE TYPE aclitem AS VARCHAR;
CREATE TYPE int2vector AS SMALLINT[];
CREATE TYPE oidvector AS BIGINT[];
CREATE TYPE xid AS BIGINT;
CREATE TYPE anyarray AS VARCHAR;
-- Reg casts are rewritten (see translate()); these only catch forms the rewrite does not know.
CREATE TYPE regclass AS BIGINT;
CREATE TYPE regtype AS BIGINT;
CREATE TYPE regnamespace AS BIGINT;

CREATE TABLE pond_ctx (k_db VARCHAR, k_schema VARCHAR, k_user VARCHAR, k_version VARCHAR, k_pid INTEGER);
CREATE TABLE pond_settings (k_name VARCHAR, k_value VARCHAR);
CREATE TABLE pond_databases (k_oid BIGINT, k_name VARCHAR);
CREATE TABLE pond_users (k_oid BIGINT, k_name VARCHAR, k_super BOOLEAN);
CREATE TABLE pond_schemas (k_oid BIGINT, k_name VARCHAR);
CREATE TABLE pond_rels (k_oid BIGINT, k_nsp BIGINT, k_name VARCHAR, k_is_view BOOLEAN, k_comment VARCHAR, k_sql VARCHAR);
CREATE TABLE pond_cols (k_rel BIGINT, k_name VARCHAR, k_num INTEGER, k_dtype VARCHAR, k_not_null BOOLEAN, k_dflt VARCHAR, k_comment VARCHAR);
CREATE TABLE pond_cons (k_rel BIGINT, k_n INTEGER, k_kind VARCHAR, k_name VARCHAR, k_cols VARCHAR[], k_nums SMALLINT[], k_reftable VARCHAR,
       k_refcols VARCHAR[], k_expr VARCHAR, k_refrel BIGINT, k_refnums SMALLINT[]);
CREATE TABLE pond_idx (k_oid BIGINT, k_rel BIGINT, k_name VARCHAR, k_unique BOOLEAN, k_cols VARCHAR[], k_nums SMALLINT[]);

-- Types: PostgreSQL's OIDs, names and format_type() spelling.
CREATE TABLE pond_types (k_oid BIGINT, k_name VARCHAR, k_len SMALLINT, k_cat VARCHAR, k_array BIGINT, k_fmt VARCHAR, k_coll BOOLEAN);
INSERT INTO pond_types VALUES
 (16, 'bool', 1, 'B', 1000, 'boolean', false),
 (17, 'bytea', -1, 'U', 1001, 'bytea', false),
 (18, 'char', 1, 'Z', 1002, '"char"', false),
 (19, 'name', 64, 'S', 1003, 'name', true),
 (20, 'int8', 8, 'N', 1016, 'bigint', false),
 (21, 'int2', 2, 'N', 1005, 'smallint', false),
 (23, 'int4', 4, 'N', 1007, 'integer', false),
 (25, 'text', -1, 'S', 1009, 'text', true),
 (26, 'oid', 4, 'N', 1028, 'oid', false),
 (114, 'json', -1, 'U', 199, 'json', false),
 (700, 'float4', 4, 'N', 1021, 'real', false),
 (701, 'float8', 8, 'N', 1022, 'double precision', false),
 (1042, 'bpchar', -1, 'S', 1014, 'character', true),
 (1043, 'varchar', -1, 'S', 1015, 'character varying', true),
 (1082, 'date', 4, 'D', 1182, 'date', false),
 (1083, 'time', 8, 'D', 1183, 'time without time zone', false),
 (1114, 'timestamp', 8, 'D', 1115, 'timestamp without time zone', false),
 (1184, 'timestamptz', 8, 'D', 1185, 'timestamp with time zone', false),
 (1186, 'interval', 16, 'T', 1187, 'interval', false),
 (1266, 'timetz', 12, 'D', 1270, 'time with time zone', false),
 (1560, 'bit', -1, 'V', 1561, 'bit', false),
 (1700, 'numeric', -1, 'N', 1231, 'numeric', false),
 (2205, 'regclass', 4, 'N', 2210, 'regclass', false),
 (2206, 'regtype', 4, 'N', 2211, 'regtype', false),
 (2950, 'uuid', 16, 'U', 2951, 'uuid', false),
 (3802, 'jsonb', -1, 'U', 3807, 'jsonb', false);

-- Lookups for the macros below. Their columns are prefixed (k_) so that a
-- macro argument naming a client's column (`oid`) never binds inside them.
CREATE VIEW pond_v_pg_type AS
SELECT k_oid AS oid, k_name AS typname, 11::BIGINT AS typnamespace, 10::BIGINT AS typowner, k_len AS typlen, k_len > 0 AS typbyval,
       'b' AS typtype, k_cat AS typcategory, false AS typispreferred, true AS typisdefined, ',' AS typdelim, 0::BIGINT AS typrelid,
       NULL::VARCHAR AS typsubscript, 0::BIGINT AS typelem, k_array AS typarray, k_name || 'in' AS typinput,
       k_name || 'out' AS typoutput, k_name || 'recv' AS typreceive, k_name || 'send' AS typsend, NULL::VARCHAR AS typmodin,
       NULL::VARCHAR AS typmodout, NULL::VARCHAR AS typanalyze, 'i' AS typalign, 'p' AS typstorage, false AS typnotnull,
       0::BIGINT AS typbasetype, -1 AS typtypmod, 0 AS typndims, CASE WHEN k_coll THEN 100 ELSE 0 END::BIGINT AS typcollation,
       NULL::VARCHAR AS typdefaultbin, NULL::VARCHAR AS typdefault, NULL::VARCHAR[] AS typacl
FROM pond_types
UNION ALL
SELECT k_array, '_' || k_name, 11, 10, -1, false, 'b', 'A', false, true, ',', 0, NULL, k_oid, 0, 'array_in', 'array_out',
       'array_recv', 'array_send', NULL, NULL, NULL, 'i', 'x', false, 0, -1, 0, CASE WHEN k_coll THEN 100 ELSE 0 END, NULL, NULL, NULL
FROM pond_types;

-- DuckDB type → PostgreSQL type OID (lists → array types).
CREATE MACRO pond_base_oid(d) AS CASE
  WHEN upper(d) = 'BOOLEAN' THEN 16
  WHEN upper(d) IN ('TINYINT', 'SMALLINT', 'UTINYINT') THEN 21
  WHEN upper(d) IN ('INTEGER', 'USMALLINT') THEN 23
  WHEN upper(d) IN ('BIGINT', 'UINTEGER') THEN 20
  WHEN upper(d) IN ('UBIGINT', 'HUGEINT', 'UHUGEINT', 'VARINT', 'BIGNUM') OR starts_with(upper(d), 'DECIMAL') THEN 1700
  WHEN upper(d) = 'FLOAT' THEN 700
  WHEN upper(d) = 'DOUBLE' THEN 701
  WHEN upper(d) = 'BLOB' THEN 17
  WHEN upper(d) = 'DATE' THEN 1082
  WHEN upper(d) = 'TIME' THEN 1083
  WHEN upper(d) = 'TIME WITH TIME ZONE' THEN 1266
  WHEN upper(d) IN ('TIMESTAMP', 'TIMESTAMP_S', 'TIMESTAMP_MS', 'TIMESTAMP_NS') THEN 1114
  WHEN upper(d) = 'TIMESTAMP WITH TIME ZONE' THEN 1184
  WHEN upper(d) = 'INTERVAL' THEN 1186
  WHEN upper(d) = 'UUID' THEN 2950
  WHEN upper(d) = 'JSON' THEN 114
  WHEN upper(d) = 'BIT' THEN 1560
  ELSE 25 END;
CREATE MACRO pond_typoid(d) AS CASE
  WHEN ends_with(d, '[]') THEN coalesce((SELECT k_array FROM pond_types WHERE k_oid = pond_base_oid(regexp_replace(d, '(\[\])+$', ''))), 1009)
  ELSE pond_base_oid(d) END;
CREATE MACRO pond_typmod(d) AS CASE
  WHEN starts_with(upper(d), 'DECIMAL(') THEN
    (CAST(regexp_extract(d, '\((\d+)', 1) AS INTEGER) * 65536 + CAST(regexp_extract(d, ',\s*(\d+)', 1) AS INTEGER)) + 4
  ELSE -1 END;

CREATE MACRO format_type(t, m) AS CASE
  WHEN t IS NULL THEN NULL
  WHEN (SELECT k_fmt FROM pond_types WHERE k_oid = t) IS NOT NULL THEN
    (SELECT k_fmt FROM pond_types WHERE k_oid = t) ||
    CASE WHEN t = 1700 AND m > 4 THEN '(' || ((m - 4) // 65536) || ',' || ((m - 4) % 65536) || ')'
         WHEN t IN (1043, 1042) AND m > 4 THEN '(' || (m - 4) || ')'
         ELSE '' END
  WHEN (SELECT k_fmt FROM pond_types WHERE k_array = t) IS NOT NULL THEN (SELECT k_fmt FROM pond_types WHERE k_array = t) || '[]'
  ELSE '???' END;

-- Namespaces: the database's schemas, plus pg_catalog and information_schema.
CREATE VIEW pond_v_pond_nsp AS
SELECT k_oid, k_name FROM pond_schemas UNION ALL SELECT 11, 'pg_catalog' UNION ALL SELECT 13000, 'information_schema';
CREATE VIEW pond_v_pg_namespace AS SELECT k_oid AS oid, k_name AS nspname, 10::BIGINT AS nspowner, NULL::VARCHAR[] AS nspacl FROM pond_v_pond_nsp;

-- Indexes: DuckDB's own (CREATE INDEX) and one per primary-key / unique constraint.
CREATE VIEW pond_v_pond_indexes AS
SELECT k_oid, k_rel, k_name, k_unique, false AS k_primary, k_nums, k_cols FROM pond_idx
UNION ALL
SELECT 2000000000 + k_rel * 1000 + k_n, k_rel, k_name, true, k_kind = 'PRIMARY KEY', k_nums, k_cols
FROM pond_cons WHERE k_kind IN ('PRIMARY KEY', 'UNIQUE');

-- Every relation: (oid, namespace, namespace name, name, kind).
CREATE VIEW pond_v_pond_allrels AS
SELECT r.k_oid, r.k_nsp, r.k_name, CASE WHEN r.k_is_view THEN 'v' ELSE 'r' END AS k_kind FROM pond_rels r
UNION ALL
SELECT i.k_oid, r.k_nsp, i.k_name, 'i' FROM pond_v_pond_indexes i JOIN pond_rels r ON r.k_oid = i.k_rel;

CREATE VIEW pond_v_pg_class AS
SELECT r.k_oid AS oid, r.k_name AS relname, r.k_nsp AS relnamespace, 0::BIGINT AS reltype, 0::BIGINT AS reloftype,
       10::BIGINT AS relowner, CASE WHEN r.k_is_view THEN 0 ELSE 2 END::BIGINT AS relam, r.k_oid AS relfilenode,
       0::BIGINT AS reltablespace, 0 AS relpages, -1::FLOAT AS reltuples, 0 AS relallvisible, 0::BIGINT AS reltoastrelid,
       EXISTS (SELECT 1 FROM pond_v_pond_indexes i WHERE i.k_rel = r.k_oid) AS relhasindex, false AS relisshared,
       'p' AS relpersistence, CASE WHEN r.k_is_view THEN 'v' ELSE 'r' END AS relkind,
       (SELECT count(*) FROM pond_cols c WHERE c.k_rel = r.k_oid)::SMALLINT AS relnatts,
       (SELECT count(*) FROM pond_cons c WHERE c.k_rel = r.k_oid AND c.k_kind = 'CHECK')::SMALLINT AS relchecks,
       false AS relhasrules,
       -- PostgreSQL enforces foreign keys with triggers; psql shows them only for tables with triggers.
       EXISTS (SELECT 1 FROM pond_cons f WHERE f.k_kind = 'FOREIGN KEY' AND (f.k_rel = r.k_oid OR f.k_refrel = r.k_oid)) AS relhastriggers,
       false AS relhassubclass, false AS relrowsecurity,
       false AS relforcerowsecurity, true AS relispopulated, 'd' AS relreplident, false AS relispartition, 0::BIGINT AS relrewrite,
       0::BIGINT AS relfrozenxid, 0::BIGINT AS relminmxid, NULL::VARCHAR[] AS relacl, NULL::VARCHAR[] AS reloptions,
       NULL::VARCHAR AS relpartbound
FROM pond_rels r
UNION ALL
SELECT i.k_oid, i.k_name, r.k_nsp, 0, 0, 10, 403, i.k_oid, 0, 0, -1, 0, 0, false, false, 'p', 'i', len(i.k_nums), 0, false, false,
       false, false, false, true, 'n', false, 0, 0, 0, NULL, NULL, NULL
FROM pond_v_pond_indexes i JOIN pond_rels r ON r.k_oid = i.k_rel;

CREATE VIEW pond_v_pg_attribute AS
SELECT c.k_rel AS attrelid, c.k_name AS attname, pond_typoid(c.k_dtype)::BIGINT AS atttypid, -1 AS attstattarget,
       coalesce((SELECT k_len FROM pond_types WHERE k_oid = pond_typoid(c.k_dtype)), -1)::SMALLINT AS attlen,
       c.k_num::SMALLINT AS attnum, CASE WHEN ends_with(c.k_dtype, '[]') THEN 1 ELSE 0 END AS attndims, -1 AS attcacheoff,
       pond_typmod(c.k_dtype) AS atttypmod, false AS attbyval, 'i' AS attalign, 'p' AS attstorage, '' AS attcompression,
       c.k_not_null AS attnotnull, c.k_dflt IS NOT NULL AS atthasdef, false AS atthasmissing, '' AS attidentity,
       '' AS attgenerated, false AS attisdropped, true AS attislocal, 0 AS attinhcount,
       CASE WHEN pond_typoid(c.k_dtype) IN (25, 1043, 1042, 19) THEN 100 ELSE 0 END::BIGINT AS attcollation,
       NULL::VARCHAR[] AS attacl, NULL::VARCHAR[] AS attoptions, NULL::VARCHAR[] AS attfdwoptions, NULL::VARCHAR AS attmissingval
FROM pond_cols c
UNION ALL
SELECT i.k_oid, i.k_col, 0, -1, -1, i.k_pos::SMALLINT, 0, -1, -1, false, 'i', 'p', '', false, false, false, '', '', false, true, 0, 0,
       NULL, NULL, NULL, NULL
FROM (SELECT k_oid, unnest(k_cols) AS k_col, generate_subscripts(k_cols, 1) AS k_pos FROM pond_v_pond_indexes) i;

CREATE VIEW pond_v_pg_attrdef AS
SELECT 4000000000 + k_rel * 1000 + k_num AS oid, k_rel AS adrelid, k_num::SMALLINT AS adnum, k_dflt AS adbin
FROM pond_cols WHERE k_dflt IS NOT NULL;

CREATE VIEW pond_v_pond_constraints AS
SELECT 3000000000 + c.k_rel * 1000 + c.k_n AS k_oid, c.*, r.k_nsp,
       CASE c.k_kind
         WHEN 'PRIMARY KEY' THEN 'PRIMARY KEY (' || array_to_string(c.k_cols, ', ') || ')'
         WHEN 'UNIQUE' THEN 'UNIQUE (' || array_to_string(c.k_cols, ', ') || ')'
         WHEN 'FOREIGN KEY' THEN 'FOREIGN KEY (' || array_to_string(c.k_cols, ', ') || ') REFERENCES ' || c.k_reftable
              || '(' || array_to_string(c.k_refcols, ', ') || ')'
         ELSE 'CHECK (' || coalesce(c.k_expr, 'true') || ')' END AS k_def
FROM pond_cons c JOIN pond_rels r ON r.k_oid = c.k_rel;

CREATE VIEW pond_v_pg_constraint AS
SELECT k_oid AS oid, k_name AS conname, k_nsp AS connamespace,
       CASE k_kind WHEN 'PRIMARY KEY' THEN 'p' WHEN 'UNIQUE' THEN 'u' WHEN 'FOREIGN KEY' THEN 'f' ELSE 'c' END AS contype,
       false AS condeferrable, false AS condeferred, true AS convalidated, k_rel AS conrelid, 0::BIGINT AS contypid,
       CASE WHEN k_kind IN ('PRIMARY KEY', 'UNIQUE') THEN 2000000000 + k_rel * 1000 + k_n ELSE 0 END::BIGINT AS conindid,
       0::BIGINT AS conparentid, coalesce(k_refrel, 0)::BIGINT AS confrelid,
       CASE WHEN k_kind = 'FOREIGN KEY' THEN 'a' ELSE ' ' END AS confupdtype,
       CASE WHEN k_kind = 'FOREIGN KEY' THEN 'a' ELSE ' ' END AS confdeltype,
       CASE WHEN k_kind = 'FOREIGN KEY' THEN 's' ELSE ' ' END AS confmatchtype,
       true AS conislocal, 0 AS coninhcount, false AS connoinherit, k_nums AS conkey,
       CASE WHEN k_kind = 'FOREIGN KEY' THEN k_refnums END AS confkey,
       NULL::BIGINT[] AS conpfeqop, NULL::BIGINT[] AS conppeqop, NULL::BIGINT[] AS conffeqop, NULL::BIGINT[] AS conexclop,
       k_expr AS conbin
FROM pond_v_pond_constraints;

CREATE VIEW pond_v_pg_index AS
SELECT k_oid AS indexrelid, k_rel AS indrelid, len(k_nums)::SMALLINT AS indnatts, len(k_nums)::SMALLINT AS indnkeyatts,
       k_unique AS indisunique, false AS indnullsnotdistinct, k_primary AS indisprimary, false AS indisexclusion,
       true AS indimmediate, false AS indisclustered, true AS indisvalid, false AS indcheckxmin, true AS indisready,
       true AS indislive, false AS indisreplident, k_nums AS indkey, list_transform(k_nums, x -> 0::BIGINT) AS indcollation,
       list_transform(k_nums, x -> 0::BIGINT) AS indclass, -- int2vector: PostgreSQL's text form ("0 0"), which drivers split themselves.
       array_to_string(list_transform(k_nums, x -> 0), ' ') AS indoption,
       NULL::VARCHAR AS indexprs, NULL::VARCHAR AS indpred
FROM pond_v_pond_indexes;

CREATE VIEW pond_v_pg_database AS
SELECT k_oid AS oid, k_name AS datname, 10::BIGINT AS datdba, 6 AS encoding, 'c' AS datlocprovider, false AS datistemplate,
       true AS datallowconn, -1 AS datconnlimit, 0::BIGINT AS datfrozenxid, 0::BIGINT AS datminmxid, 1663::BIGINT AS dattablespace,
       'C' AS datcollate, 'C' AS datctype, NULL::VARCHAR AS daticulocale, NULL::VARCHAR AS datcollversion, NULL::VARCHAR[] AS datacl
FROM pond_databases;

CREATE VIEW pond_v_pg_roles AS
SELECT k_name AS rolname, k_super AS rolsuper, true AS rolinherit, k_super AS rolcreaterole, k_super AS rolcreatedb,
       true AS rolcanlogin, false AS rolreplication, -1 AS rolconnlimit, '********' AS rolpassword,
       NULL::TIMESTAMPTZ AS rolvaliduntil, k_super AS rolbypassrls, NULL::VARCHAR[] AS rolconfig, k_oid AS oid
FROM pond_users;
CREATE VIEW pond_v_pg_authid AS SELECT oid, rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication,
       rolbypassrls, rolconnlimit, NULL::VARCHAR AS rolpassword, rolvaliduntil FROM pond_v_pg_roles;
CREATE VIEW pond_v_pg_user AS
SELECT k_name AS usename, k_oid AS usesysid, k_super AS usecreatedb, k_super AS usesuper, false AS userepl,
       k_super AS usebypassrls, '********' AS passwd, NULL::TIMESTAMPTZ AS valuntil, NULL::VARCHAR[] AS useconfig
FROM pond_users;
CREATE TABLE pg_auth_members (oid BIGINT, roleid BIGINT, member BIGINT, grantor BIGINT, admin_option BOOLEAN);

CREATE VIEW pond_v_pg_settings AS
SELECT k_name AS name, k_value AS setting, NULL::VARCHAR AS unit, 'Pond' AS category, '' AS short_desc, NULL::VARCHAR AS extra_desc,
       'user' AS context, 'string' AS vartype, 'session' AS source, NULL::VARCHAR AS min_val, NULL::VARCHAR AS max_val,
       NULL::VARCHAR[] AS enumvals, k_value AS boot_val, k_value AS reset_val, NULL::VARCHAR AS sourcefile,
       NULL::INTEGER AS sourceline, false AS pending_restart
FROM pond_settings;

CREATE VIEW pond_v_pond_desc AS
SELECT k_oid AS k_obj, 0 AS k_sub, k_comment AS k_text FROM pond_rels WHERE k_comment IS NOT NULL
UNION ALL SELECT k_rel, k_num, k_comment FROM pond_cols WHERE k_comment IS NOT NULL;
CREATE VIEW pond_v_pg_description AS SELECT k_obj AS objoid, 1259::BIGINT AS classoid, k_sub AS objsubid, k_text AS description FROM pond_v_pond_desc;
CREATE TABLE pg_shdescription (objoid BIGINT, classoid BIGINT, description VARCHAR);

CREATE TABLE pg_am (oid BIGINT, amname VARCHAR, amhandler VARCHAR, amtype VARCHAR);
INSERT INTO pg_am VALUES (2, 'heap', 'heap_tableam_handler', 't'), (403, 'art', 'art_handler', 'i');
CREATE TABLE pg_tablespace (oid BIGINT, spcname VARCHAR, spcowner BIGINT, spcacl VARCHAR[], spcoptions VARCHAR[]);
INSERT INTO pg_tablespace VALUES (1663, 'pg_default', 10, NULL, NULL);
CREATE TABLE pg_collation (oid BIGINT, collname VARCHAR, collnamespace BIGINT, collowner BIGINT, collprovider VARCHAR,
       collisdeterministic BOOLEAN, collencoding INTEGER, collcollate VARCHAR, collctype VARCHAR);
INSERT INTO pg_collation VALUES (100, 'default', 11, 10, 'd', true, -1, NULL, NULL), (950, 'C', 11, 10, 'c', true, -1, 'C', 'C');

-- Relations Pond has nothing for: empty, with the columns clients read.
CREATE TABLE pg_inherits (inhrelid BIGINT, inhparent BIGINT, inhseqno INTEGER, inhdetachpending BOOLEAN);
CREATE TABLE pg_policy (oid BIGINT, polname VARCHAR, polrelid BIGINT, polcmd VARCHAR, polpermissive BOOLEAN, polroles BIGINT[],
       polqual VARCHAR, polwithcheck VARCHAR);
CREATE TABLE pg_statistic_ext (oid BIGINT, stxrelid BIGINT, stxname VARCHAR, stxnamespace BIGINT, stxowner BIGINT,
       stxstattarget INTEGER, stxkeys SMALLINT[], stxkind VARCHAR[], stxexprs VARCHAR);
CREATE TABLE pg_publication (oid BIGINT, pubname VARCHAR, pubowner BIGINT, puballtables BOOLEAN, pubinsert BOOLEAN,
       pubupdate BOOLEAN, pubdelete BOOLEAN, pubtruncate BOOLEAN, pubviaroot BOOLEAN);
CREATE TABLE pg_publication_namespace (oid BIGINT, pnpubid BIGINT, pnnspid BIGINT);
CREATE TABLE pg_publication_rel (oid BIGINT, prpubid BIGINT, prrelid BIGINT, prqual VARCHAR, prattrs SMALLINT[]);
CREATE TABLE pg_trigger (oid BIGINT, tgrelid BIGINT, tgparentid BIGINT, tgname VARCHAR, tgfoid BIGINT, tgtype SMALLINT,
       tgenabled VARCHAR, tgisinternal BOOLEAN, tgconstrrelid BIGINT, tgconstrindid BIGINT, tgconstraint BIGINT,
       tgdeferrable BOOLEAN, tginitdeferred BOOLEAN, tgnargs SMALLINT, tgattr SMALLINT[], tgargs BLOB, tgqual VARCHAR,
       tgoldtable VARCHAR, tgnewtable VARCHAR);
CREATE TABLE pg_rewrite (oid BIGINT, rulename VARCHAR, ev_class BIGINT, ev_type VARCHAR, ev_enabled VARCHAR, is_instead BOOLEAN,
       ev_qual VARCHAR, ev_action VARCHAR);
CREATE TABLE pg_depend (classid BIGINT, objid BIGINT, objsubid INTEGER, refclassid BIGINT, refobjid BIGINT, refobjsubid INTEGER,
       deptype VARCHAR);
CREATE TABLE pg_sequence (seqrelid BIGINT, seqtypid BIGINT, seqstart BIGINT, seqincrement BIGINT, seqmax BIGINT, seqmin BIGINT,
       seqcache BIGINT, seqcycle BOOLEAN);
CREATE TABLE pg_sequences (schemaname VARCHAR, sequencename VARCHAR, sequenceowner VARCHAR, data_type VARCHAR,
       start_value BIGINT, min_value BIGINT, max_value BIGINT, increment_by BIGINT, cycle BOOLEAN, cache_size BIGINT,
       last_value BIGINT);
CREATE TABLE pg_enum (oid BIGINT, enumtypid BIGINT, enumsortorder FLOAT, enumlabel VARCHAR);
CREATE TABLE pg_extension (oid BIGINT, extname VARCHAR, extowner BIGINT, extnamespace BIGINT, extrelocatable BOOLEAN,
       extversion VARCHAR, extconfig BIGINT[], extcondition VARCHAR[]);
CREATE TABLE pg_opclass (oid BIGINT, opcmethod BIGINT, opcname VARCHAR, opcnamespace BIGINT, opcowner BIGINT, opcfamily BIGINT,
       opcintype BIGINT, opcdefault BOOLEAN, opckeytype BIGINT);
CREATE TABLE pg_proc (oid BIGINT, proname VARCHAR, pronamespace BIGINT, proowner BIGINT, prolang BIGINT, procost FLOAT,
       prorows FLOAT, provariadic BIGINT, prosupport VARCHAR, prokind VARCHAR, prosecdef BOOLEAN, proleakproof BOOLEAN,
       proisstrict BOOLEAN, proretset BOOLEAN, provolatile VARCHAR, proparallel VARCHAR, pronargs SMALLINT,
       pronargdefaults SMALLINT, prorettype BIGINT, proargtypes BIGINT[], proallargtypes BIGINT[], proargmodes VARCHAR[],
       proargnames VARCHAR[], proargdefaults VARCHAR, protrftypes BIGINT[], prosrc VARCHAR, probin VARCHAR, prosqlbody VARCHAR,
       proconfig VARCHAR[], proacl VARCHAR[]);
CREATE TABLE pg_range (rngtypid BIGINT, rngsubtype BIGINT, rngmultitypid BIGINT, rngcollation BIGINT, rngsubopc BIGINT);
CREATE TABLE pg_foreign_table (ftrelid BIGINT, ftserver BIGINT, ftoptions VARCHAR[]);
CREATE TABLE pg_partitioned_table (partrelid BIGINT, partstrat VARCHAR, partnatts SMALLINT, partdefid BIGINT, partattrs SMALLINT[]);
CREATE TABLE pg_event_trigger (oid BIGINT, evtname VARCHAR, evtevent VARCHAR, evtowner BIGINT, evtfoid BIGINT, evtenabled VARCHAR);
CREATE TABLE pg_language (oid BIGINT, lanname VARCHAR, lanowner BIGINT, lanispl BOOLEAN, lanpltrusted BOOLEAN);
INSERT INTO pg_language VALUES (14, 'sql', 10, false, true);
CREATE TABLE pg_operator (oid BIGINT, oprname VARCHAR, oprnamespace BIGINT, oprleft BIGINT, oprright BIGINT, oprresult BIGINT);
CREATE TABLE pg_cast (oid BIGINT, castsource BIGINT, casttarget BIGINT, castfunc BIGINT, castcontext VARCHAR, castmethod VARCHAR);
CREATE TABLE pg_matviews (schemaname VARCHAR, matviewname VARCHAR, matviewowner VARCHAR, tablespace VARCHAR,
       hasindexes BOOLEAN, ispopulated BOOLEAN, definition VARCHAR);
CREATE VIEW pond_v_pg_stat_activity AS
SELECT 0::BIGINT AS datid, k_db AS datname, k_pid AS pid, 0::BIGINT AS usesysid, k_user AS usename,
       (SELECT k_value FROM pond_settings WHERE k_name = 'application_name') AS application_name, NULL::VARCHAR AS client_addr,
       'active' AS state, NULL::VARCHAR AS query, NULL::TIMESTAMPTZ AS backend_start, NULL::TIMESTAMPTZ AS query_start
FROM pond_ctx;

CREATE VIEW pond_v_pg_tables AS
SELECT n.k_name AS schemaname, r.k_name AS tablename, 'pond' AS tableowner, NULL::VARCHAR AS tablespace,
       EXISTS (SELECT 1 FROM pond_v_pond_indexes i WHERE i.k_rel = r.k_oid) AS hasindexes, false AS hasrules, false AS hastriggers,
       false AS rowsecurity
FROM pond_rels r JOIN pond_v_pond_nsp n ON n.k_oid = r.k_nsp WHERE NOT r.k_is_view;
CREATE VIEW pond_v_pg_views AS
SELECT n.k_name AS schemaname, r.k_name AS viewname, 'pond' AS viewowner, r.k_sql AS definition
FROM pond_rels r JOIN pond_v_pond_nsp n ON n.k_oid = r.k_nsp WHERE r.k_is_view;
CREATE VIEW pond_v_pg_indexes AS
SELECT n.k_name AS schemaname, r.k_name AS tablename, i.k_name AS indexname, NULL::VARCHAR AS tablespace,
       'CREATE ' || CASE WHEN i.k_unique THEN 'UNIQUE ' ELSE '' END || 'INDEX ' || i.k_name || ' ON ' || n.k_name || '.' || r.k_name
       || ' USING art (' || array_to_string(i.k_cols, ', ') || ')' AS indexdef
FROM pond_v_pond_indexes i JOIN pond_rels r ON r.k_oid = i.k_rel JOIN pond_v_pond_nsp n ON n.k_oid = r.k_nsp;

-- Clients and macros read tables, refreshed from the views whenever the facts change (pgcatalog.rs).
CREATE TABLE pg_type AS SELECT * FROM pond_v_pg_type;
CREATE TABLE pond_nsp AS SELECT * FROM pond_v_pond_nsp;
CREATE TABLE pg_namespace AS SELECT * FROM pond_v_pg_namespace;
CREATE TABLE pond_indexes AS SELECT * FROM pond_v_pond_indexes;
CREATE TABLE pond_allrels AS SELECT * FROM pond_v_pond_allrels;
CREATE TABLE pg_class AS SELECT * FROM pond_v_pg_class;
CREATE TABLE pg_attribute AS SELECT * FROM pond_v_pg_attribute;
CREATE TABLE pg_attrdef AS SELECT * FROM pond_v_pg_attrdef;
CREATE TABLE pond_constraints AS SELECT * FROM pond_v_pond_constraints;
CREATE TABLE pg_constraint AS SELECT * FROM pond_v_pg_constraint;
CREATE TABLE pg_index AS SELECT * FROM pond_v_pg_index;
CREATE TABLE pg_database AS SELECT * FROM pond_v_pg_database;
CREATE TABLE pg_roles AS SELECT * FROM pond_v_pg_roles;
CREATE TABLE pg_authid AS SELECT * FROM pond_v_pg_authid;
CREATE TABLE pg_user AS SELECT * FROM pond_v_pg_user;
CREATE TABLE pg_settings AS SELECT * FROM pond_v_pg_settings;
CREATE TABLE pond_desc AS SELECT * FROM pond_v_pond_desc;
CREATE TABLE pg_description AS SELECT * FROM pond_v_pg_description;
CREATE TABLE pg_stat_activity AS SELECT * FROM pond_v_pg_stat_activity;
CREATE TABLE pg_tables AS SELECT * FROM pond_v_pg_tables;
CREATE TABLE pg_views AS SELECT * FROM pond_v_pg_views;
CREATE TABLE pg_indexes AS SELECT * FROM pond_v_pg_indexes;

-- Session functions.
CREATE MACRO version() AS (SELECT k_version FROM pond_ctx);
CREATE MACRO current_database() AS (SELECT k_db FROM pond_ctx);
CREATE MACRO current_catalog() AS (SELECT k_db FROM pond_ctx);
CREATE MACRO current_schema() AS (SELECT k_schema FROM pond_ctx);
CREATE MACRO current_schemas(implicit) AS
  CASE WHEN implicit THEN ['pg_catalog', (SELECT k_schema FROM pond_ctx)] ELSE [(SELECT k_schema FROM pond_ctx)] END;
CREATE MACRO pg_backend_pid() AS (SELECT k_pid FROM pond_ctx);
CREATE MACRO pg_is_in_recovery() AS false;
CREATE MACRO current_setting(n) AS CASE WHEN EXISTS (SELECT 1 FROM pond_settings WHERE k_name = lower(n))
    THEN (SELECT k_value FROM pond_settings WHERE k_name = lower(n))
    ELSE error('unrecognized configuration parameter "' || n || '"') END,
  (n, missing_ok) AS (SELECT k_value FROM pond_settings WHERE k_name = lower(n));
CREATE MACRO pg_encoding_to_char(e) AS CASE WHEN e = 6 THEN 'UTF8' ELSE 'SQL_ASCII' END;
CREATE MACRO pg_char_to_encoding(e) AS CASE WHEN upper(e) = 'UTF8' THEN 6 ELSE 0 END;

-- Catalog functions.
CREATE MACRO pg_get_userbyid(u) AS coalesce((SELECT k_name FROM pond_users WHERE k_oid = u), 'pond');
CREATE MACRO pg_table_is_visible(r) AS coalesce((SELECT k_nsp = 11 OR k_nsp = (SELECT k_oid FROM pond_schemas
  WHERE k_name = (SELECT k_schema FROM pond_ctx)) FROM pond_allrels WHERE k_oid = r), false);
CREATE MACRO pg_type_is_visible(t) AS true;
CREATE MACRO pg_function_is_visible(f) AS true;
CREATE MACRO pg_collation_is_visible(f) AS true;
CREATE MACRO pg_get_expr(e, r) AS e, (e, r, pretty) AS e;
CREATE MACRO pg_get_constraintdef(c) AS (SELECT k_def FROM pond_constraints WHERE k_oid = c),
  (c, pretty) AS (SELECT k_def FROM pond_constraints WHERE k_oid = c);
CREATE MACRO pond_indexdef(i, col) AS (SELECT CASE WHEN col > 0 THEN x.k_cols[col]
  ELSE 'CREATE ' || CASE WHEN x.k_unique THEN 'UNIQUE ' ELSE '' END || 'INDEX ' || x.k_name || ' ON ' || n.k_name || '.' || r.k_name
       || ' USING art (' || array_to_string(x.k_cols, ', ') || ')' END
  FROM pond_indexes x JOIN pond_rels r ON r.k_oid = x.k_rel JOIN pond_nsp n ON n.k_oid = r.k_nsp WHERE x.k_oid = i);
CREATE MACRO pg_get_indexdef(i) AS pond_indexdef(i, 0), (i, col, pretty) AS pond_indexdef(i, col);
CREATE MACRO pg_get_viewdef(v) AS (SELECT k_sql FROM pond_rels WHERE k_oid = v), (v, pretty) AS (SELECT k_sql FROM pond_rels WHERE k_oid = v);
CREATE MACRO pg_get_triggerdef(t) AS NULL::VARCHAR, (t, pretty) AS NULL::VARCHAR;
CREATE MACRO pg_get_statisticsobjdef_columns(s) AS NULL::VARCHAR;
CREATE MACRO pg_get_serial_sequence(t, c) AS NULL::VARCHAR;
CREATE MACRO pg_relation_is_publishable(r) AS false;
CREATE MACRO array_upper(a, d) AS len(a);
CREATE MACRO array_lower(a, d) AS CASE WHEN len(a) > 0 THEN 1 END;
CREATE MACRO obj_description(o) AS (SELECT k_text FROM pond_desc WHERE k_obj = o AND k_sub = 0),
  (o, cat) AS (SELECT k_text FROM pond_desc WHERE k_obj = o AND k_sub = 0);
CREATE MACRO col_description(o, n) AS (SELECT k_text FROM pond_desc WHERE k_obj = o AND k_sub = n);
CREATE MACRO shobj_description(o, cat) AS NULL::VARCHAR;

-- regclass / regtype / regnamespace: names for values, OIDs for literals (see translate()).
CREATE MACRO pond_unqualify(x) AS trim(regexp_extract(CAST(x AS VARCHAR), '([^.]*)$', 1), '"');
CREATE MACRO pond_regclass_name(x) AS coalesce((SELECT k_name FROM pond_allrels WHERE k_oid = TRY_CAST(x AS BIGINT)), CAST(x AS VARCHAR));
CREATE MACRO pond_regclass_oid(x) AS coalesce(TRY_CAST(x AS BIGINT),
  (SELECT k_oid FROM pond_allrels WHERE k_name = pond_unqualify(x) ORDER BY k_oid LIMIT 1),
  CASE pond_unqualify(x) WHEN 'pg_class' THEN 1259 WHEN 'pg_type' THEN 1247 WHEN 'pg_attribute' THEN 1249
    WHEN 'pg_proc' THEN 1255 WHEN 'pg_namespace' THEN 2615 WHEN 'pg_constraint' THEN 2606 WHEN 'pg_database' THEN 1262 END);
-- A table that is not partitioned is its own only ancestor (the table-function form is rewritten, see translate()).
CREATE MACRO pg_partition_ancestors(r) AS pond_regclass_oid(r);
CREATE MACRO to_regclass(x) AS (SELECT k_oid FROM pond_allrels WHERE k_name = pond_unqualify(x) ORDER BY k_oid LIMIT 1);
CREATE MACRO pond_regtype_name(x) AS format_type(TRY_CAST(x AS BIGINT), NULL);
CREATE MACRO to_regtype(x) AS (SELECT k_oid FROM (SELECT k_oid, k_name, k_fmt FROM pond_types
  UNION ALL SELECT k_array, '_' || k_name, k_fmt || '[]' FROM pond_types)
  WHERE k_name = lower(CAST(x AS VARCHAR)) OR k_fmt = lower(CAST(x AS VARCHAR)) ORDER BY k_oid LIMIT 1);
CREATE MACRO pond_regtype_oid(x) AS coalesce(TRY_CAST(x AS BIGINT), to_regtype(x));
CREATE MACRO pond_regnamespace_name(x) AS (SELECT k_name FROM pond_nsp WHERE k_oid = TRY_CAST(x AS BIGINT));
CREATE MACRO pond_regnamespace_oid(x) AS coalesce(TRY_CAST(x AS BIGINT), (SELECT k_oid FROM pond_nsp WHERE k_name = pond_unqualify(x)));

-- Privileges: the catalog only holds what the caller may see.
CREATE MACRO pond_has_table(t) AS EXISTS (SELECT 1 FROM pond_allrels WHERE k_oid = TRY_CAST(t AS BIGINT) OR k_name = pond_unqualify(t));
CREATE MACRO has_table_privilege(t, p) AS pond_has_table(t), (u, t, p) AS pond_has_table(t);
CREATE MACRO has_any_column_privilege(t, p) AS pond_has_table(t), (u, t, p) AS pond_has_table(t);
CREATE MACRO has_column_privilege(t, c, p) AS pond_has_table(t), (u, t, c, p) AS pond_has_table(t);
CREATE MACRO pond_has_schema(s) AS EXISTS (SELECT 1 FROM pond_nsp WHERE k_oid = TRY_CAST(s AS BIGINT) OR k_name = CAST(s AS VARCHAR));
CREATE MACRO has_schema_privilege(s, p) AS pond_has_schema(s), (u, s, p) AS pond_has_schema(s);
CREATE MACRO pond_has_database(d) AS EXISTS (SELECT 1 FROM pond_databases WHERE k_oid = TRY_CAST(d AS BIGINT) OR k_name = CAST(d AS VARCHAR));
CREATE MACRO has_database_privilege(d, p) AS pond_has_database(d), (u, d, p) AS pond_has_database(d);
CREATE MACRO pg_has_role(r, p) AS true, (u, r, p) AS true;
