// Pond's subset of the Apache Hive 2.3 metastore Thrift IDL: only the structs and
// ThriftHiveMetastore methods Pond calls. Field ids, types and requiredness are those
// of Hive 2.3's hive_metastore.thrift (the wire protocol); fields Pond never reads are
// left out, and the generated decoders skip any field id they do not know, so newer
// servers that add fields (Hive 3's catName, ...) still decode.
//
// Regenerate src/hms/hive_metastore.rs with thrift/generate.sh (Thrift 0.17 compiler).

namespace rs hive_metastore

enum PrincipalType {
  USER  = 1,
  ROLE  = 2,
  GROUP = 3,
}

struct FieldSchema {
  1: string name,    // lower-case column name
  2: string type,    // Hive type string: int, string, array<struct<a:int>>, decimal(10,2), ...
  3: string comment
}

struct SerDeInfo {
  1: string name,
  2: string serializationLib,          // the SerDe class
  3: map<string, string> parameters    // field.delim, serialization.null.format, ...
}

struct Order {
  1: string col,
  2: i32 order   // 1 ascending, 0 descending
}

// 11: optional SkewedInfo skewedInfo is left out (skipped when present).
struct StorageDescriptor {
  1: list<FieldSchema> cols,
  2: string location,
  3: string inputFormat,
  4: string outputFormat,
  5: bool compressed,
  6: i32 numBuckets,
  7: SerDeInfo serdeInfo,
  8: list<string> bucketCols,
  9: list<Order> sortCols,
  10: map<string, string> parameters,
  12: optional bool storedAsSubDirectories
}

// 13: optional PrincipalPrivilegeSet privileges is left out.
struct Table {
  1: string tableName,
  2: string dbName,
  3: string owner,
  4: i32 createTime,
  5: i32 lastAccessTime,
  6: i32 retention,
  7: StorageDescriptor sd,
  8: list<FieldSchema> partitionKeys,
  9: map<string, string> parameters,
  10: string viewOriginalText,
  11: string viewExpandedText,
  12: string tableType,   // MANAGED_TABLE, EXTERNAL_TABLE, VIRTUAL_VIEW, ...
  14: optional bool temporary = false,
  15: optional bool rewriteEnabled
}

// 8: optional PrincipalPrivilegeSet privileges is left out.
struct Partition {
  1: list<string> values,   // in partition-key order, as text
  2: string dbName,
  3: string tableName,
  4: i32 createTime,
  5: i32 lastAccessTime,
  6: StorageDescriptor sd,
  7: map<string, string> parameters
}

// 5: optional PrincipalPrivilegeSet privileges is left out.
struct Database {
  1: string name,
  2: string description,
  3: string locationUri,
  4: map<string, string> parameters,
  6: optional string ownerName,
  7: optional PrincipalType ownerType
}

exception MetaException {
  1: string message
}

exception NoSuchObjectException {
  1: string message
}

// 3: optional ClientCapabilities capabilities is left out (Pond never sends it).
struct GetTableRequest {
  1: required string dbName,
  2: required string tblName
}

struct GetTableResult {
  1: required Table table
}

service ThriftHiveMetastore {
  list<string> get_all_databases()
      throws(1: MetaException o1)
  Database get_database(1: string name)
      throws(1: NoSuchObjectException o1, 2: MetaException o2)
  list<string> get_all_tables(1: string db_name)
      throws(1: MetaException o1)

  // Hive 2.3 has both; Hive 4 removed get_table, HMS before 2.3 lacks get_table_req.
  Table get_table(1: string dbname, 2: string tbl_name)
      throws(1: MetaException o1, 2: NoSuchObjectException o2)
  GetTableResult get_table_req(1: GetTableRequest req)
      throws(1: MetaException o1, 2: NoSuchObjectException o2)
  list<Table> get_table_objects_by_name(1: string dbname, 2: list<string> tbl_names)

  list<Partition> get_partitions(1: string db_name, 2: string tbl_name, 3: i16 max_parts = -1)
      throws(1: NoSuchObjectException o1, 2: MetaException o2)
  // Hive 2.3 declares only `1: MetaException o2`. Hive 3 and later declare
  // `1: NoSuchObjectException o1, 2: MetaException o2`; the extra `o3` catches that
  // MetaException (their not-found arrives in id 1 and decodes as o2: same shape).
  list<string> get_partition_names(1: string db_name, 2: string tbl_name, 3: i16 max_parts = -1)
      throws(1: MetaException o2, 2: MetaException o3)
  // part_vals: a prefix of the partition values; "" matches any value.
  list<string> get_partition_names_ps(1: string db_name, 2: string tbl_name,
                                      3: list<string> part_vals, 4: i16 max_parts = -1)
      throws(1: MetaException o1, 2: NoSuchObjectException o2)
  list<Partition> get_partitions_by_filter(1: string db_name, 2: string tbl_name,
                                           3: string filter, 4: i16 max_parts = -1)
      throws(1: MetaException o1, 2: NoSuchObjectException o2)
  list<Partition> get_partitions_by_names(1: string db_name, 2: string tbl_name,
                                          3: list<string> names)
      throws(1: MetaException o1, 2: NoSuchObjectException o2)
}
