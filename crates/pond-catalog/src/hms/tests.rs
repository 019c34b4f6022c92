//! The client against an in-process fake metastore (the generated processor
//! with a scripted handler) and the decoders against hand-written bytes; the
//! real Hive Metastore is exercised by the interop suite and `examples/hms_probe.rs`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use parking_lot::Mutex;
use thrift::protocol::{
    TBinaryInputProtocol, TBinaryOutputProtocol, TFieldIdentifier, TListIdentifier, TMapIdentifier, TOutputProtocol, TSerializable,
    TStructIdentifier, TType,
};
use thrift::server::TProcessor;
use thrift::transport::{TBufferedReadTransport, TBufferedWriteTransport, TFramedReadTransport, TFramedWriteTransport};
use thrift::{ApplicationError, ApplicationErrorKind};

use super::hive_metastore::{GetTableResult, ThriftHiveMetastoreSyncHandler, ThriftHiveMetastoreSyncProcessor};
use super::*;

// ---- decoding -------------------------------------------------------------------

fn encode(value: &impl TSerializable) -> Vec<u8> {
    let mut buf = Vec::new();
    {
        let mut out = TBinaryOutputProtocol::new(&mut buf, true);
        value.write_to_out_protocol(&mut out).unwrap();
        out.flush().unwrap();
    }
    buf
}

fn decode<T: TSerializable>(bytes: &[u8]) -> thrift::Result<T> {
    let mut input = TBinaryInputProtocol::new(bytes, true);
    T::read_from_in_protocol(&mut input)
}

fn string_field(out: &mut dyn TOutputProtocol, id: i16, value: &str) {
    out.write_field_begin(&TFieldIdentifier::new("f", TType::String, id)).unwrap();
    out.write_string(value).unwrap();
    out.write_field_end().unwrap();
}

#[test]
fn decoders_skip_fields_the_subset_leaves_out() {
    // A FieldSchema as a newer metastore might send it: extra fields of every shape
    // (a struct holding list<list<string>> and map<string,i64>, a list of structs,
    // a bool) before, between and after the known ones.
    let mut buf = Vec::new();
    {
        let mut out = TBinaryOutputProtocol::new(&mut buf, true);
        out.write_struct_begin(&TStructIdentifier::new("FieldSchema")).unwrap();
        string_field(&mut out, 99, "unknown");
        string_field(&mut out, 1, "dt");
        out.write_field_begin(&TFieldIdentifier::new("skewed", TType::Struct, 4)).unwrap();
        out.write_struct_begin(&TStructIdentifier::new("Skewed")).unwrap();
        out.write_field_begin(&TFieldIdentifier::new("values", TType::List, 1)).unwrap();
        out.write_list_begin(&TListIdentifier::new(TType::List, 2)).unwrap();
        for inner in [["a", "b"], ["c", "d"]] {
            out.write_list_begin(&TListIdentifier::new(TType::String, 2)).unwrap();
            for s in inner {
                out.write_string(s).unwrap();
            }
            out.write_list_end().unwrap();
        }
        out.write_list_end().unwrap();
        out.write_field_end().unwrap();
        out.write_field_begin(&TFieldIdentifier::new("counts", TType::Map, 2)).unwrap();
        out.write_map_begin(&TMapIdentifier::new(TType::String, TType::I64, 1)).unwrap();
        out.write_string("k").unwrap();
        out.write_i64(7).unwrap();
        out.write_map_end().unwrap();
        out.write_field_end().unwrap();
        out.write_field_stop().unwrap();
        out.write_struct_end().unwrap();
        out.write_field_end().unwrap();
        string_field(&mut out, 2, "date");
        out.write_field_begin(&TFieldIdentifier::new("flag", TType::Bool, 5)).unwrap();
        out.write_bool(true).unwrap();
        out.write_field_end().unwrap();
        string_field(&mut out, 3, "day");
        out.write_field_stop().unwrap();
        out.write_struct_end().unwrap();
        out.flush().unwrap();
    }
    let f: FieldSchema = decode(&buf).unwrap();
    assert_eq!(f, FieldSchema::new("dt".to_string(), "date".to_string(), "day".to_string()));
}

#[test]
fn a_bigger_generated_struct_decodes_as_a_smaller_one() {
    // Table's fields 1 and 2 are strings like GetTableRequest's; everything else
    // (a StorageDescriptor, lists, maps, bools) must be skipped.
    let table = sample_table("sales", "events");
    let req: GetTableRequest = decode(&encode(&table)).unwrap();
    assert_eq!(req, GetTableRequest::new("events".to_string(), "sales".to_string()));
    let back: Table = decode(&encode(&table)).unwrap();
    assert_eq!(back, table);
}

#[test]
fn container_sizes_from_the_wire_are_bounded() {
    // A list header claiming 2^31-1 strings must fail before anything is reserved.
    let buf = [11u8, 0x7f, 0xff, 0xff, 0xff]; // element type string, size i32::MAX
    let mut input = wire::Bounded(TBinaryInputProtocol::new(&buf[..], true));
    match thrift::protocol::TInputProtocol::read_list_begin(&mut input) {
        Err(thrift::Error::Protocol(p)) => assert!(p.message.contains("limit"), "{}", p.message),
        other => panic!("{other:?}"),
    }
}

#[test]
fn framed_reader_refuses_a_buffered_answer() {
    // A buffered reply starts 0x80 0x01 (the versioned message header): as a frame
    // length that is negative.
    let bytes = [0x80u8, 0x01, 0x00, 0x02, 0, 0, 0, 0];
    let mut reader = wire::FramedReader::new(&bytes[..]);
    let err = reader.read(&mut [0u8; 16]).unwrap_err();
    assert!(err.to_string().contains("frame size"), "{err}");
    // "HTTP" would claim 1.2 GB: refused too (limit 1 GiB) ...
    let mut reader = wire::FramedReader::new(&b"HTTP/1.1 400"[..]);
    assert!(reader.read(&mut [0u8; 16]).is_err());
    // ... and a frame that is cut short is an error, not a hang or a huge buffer.
    let mut reader = wire::FramedReader::new(&[0u8, 0, 0x10, 0, 1, 2, 3][..]);
    assert_eq!(reader.read(&mut [0u8; 16]).unwrap_err().kind(), std::io::ErrorKind::UnexpectedEof);
    let mut reader = wire::FramedReader::new(&[0u8, 0, 0, 3, 1, 2, 3, 0, 0, 0, 1, 4][..]);
    let mut all = Vec::new();
    reader.read_to_end(&mut all).unwrap();
    assert_eq!(all, [1, 2, 3, 4]);
}

// ---- URIs and options -----------------------------------------------------------

#[test]
fn uris_parse() {
    let ep = parse_uri("thrift://hms.example:9083").unwrap();
    assert_eq!(ep.authority, "hms.example:9083");
    assert_eq!(parse_uri(" THRIFT://h/ ").unwrap().authority, format!("h:{DEFAULT_PORT}"));
    assert_eq!(parse_uri("10.0.0.1:9999").unwrap().authority, "10.0.0.1:9999");
    assert_eq!(parse_uri("thrift://[::1]:9083").unwrap().authority, "[::1]:9083");
    assert_eq!(parse_uri("thrift://[::1]").unwrap().authority, "[::1]:9083");
    for bad in ["http://h:9083", "thrift://", "thrift://h:0", "thrift://h:x", "thrift://:9083", "thrift://h:9083/db"] {
        let e = parse_uri(bad).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Protocol, "{bad}");
        assert!(!e.retryable);
        assert!(e.message.contains("thrift://host:port"), "{}", e.message);
    }
    let c = HmsClient::new(&["thrift://a:1, thrift://b:2".to_string()], Transport::Buffered, Timeouts::default()).unwrap();
    assert_eq!(c.endpoints.len(), 2);
    assert!(HmsClient::new(&[], Transport::Buffered, Timeouts::default()).is_err());
    assert_eq!("FRAMED".parse::<Transport>(), Ok(Transport::Framed));
    assert!("http".parse::<Transport>().is_err());
}

// ---- a fake metastore -----------------------------------------------------------

fn sample_table(db: &str, name: &str) -> Table {
    // Every field set: the decoders turn an absent string into Some("").
    let cols = vec![FieldSchema::new("v".to_string(), "double".to_string(), String::new())];
    let serde = SerDeInfo::new(
        String::new(),
        "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe".to_string(),
        BTreeMap::from([("serialization.format".to_string(), "1".to_string())]),
    );
    let sd = StorageDescriptor {
        cols: Some(cols),
        location: Some(format!("file:/warehouse/{db}.db/{name}")),
        input_format: Some("org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat".into()),
        output_format: Some("org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat".into()),
        compressed: Some(false),
        num_buckets: Some(-1),
        serde_info: Some(serde),
        bucket_cols: Some(vec![]),
        sort_cols: Some(vec![]),
        parameters: Some(BTreeMap::new()),
        stored_as_sub_directories: Some(false),
    };
    Table {
        table_name: Some(name.to_string()),
        db_name: Some(db.to_string()),
        owner: Some("pond".into()),
        create_time: Some(0),
        last_access_time: Some(0),
        retention: Some(0),
        sd: Some(sd),
        partition_keys: Some(vec![FieldSchema::new("dt".to_string(), "string".to_string(), String::new())]),
        parameters: Some(BTreeMap::from([("EXTERNAL".to_string(), "TRUE".to_string())])),
        view_original_text: Some(String::new()),
        view_expanded_text: Some(String::new()),
        table_type: Some("EXTERNAL_TABLE".into()),
        temporary: Some(false),
        rewrite_enabled: None,
    }
}

#[derive(Default)]
struct State {
    /// Answer get_table_req with "Invalid method name" like HMS < 2.3.
    legacy: bool,
    /// Sleep this long in the next get_all_databases.
    delay: Mutex<Option<Duration>>,
    calls: Mutex<Vec<String>>,
    connections: AtomicUsize,
}

impl State {
    fn calls(&self) -> Vec<String> {
        self.calls.lock().clone()
    }
    fn record(&self, call: &str) {
        self.calls.lock().push(call.to_string());
    }
}

struct Fake(Arc<State>);

fn not_found(what: &str) -> thrift::Error {
    NoSuchObjectException::new(format!("{what} not found")).into()
}

impl ThriftHiveMetastoreSyncHandler for Fake {
    fn handle_get_all_databases(&self) -> thrift::Result<Vec<String>> {
        self.0.record("get_all_databases");
        let delay = self.0.delay.lock().take();
        if let Some(d) = delay {
            thread::sleep(d);
        }
        Ok(vec!["default".into(), "sales".into()])
    }
    fn handle_get_database(&self, name: String) -> thrift::Result<Database> {
        self.0.record("get_database");
        if name != "sales" {
            return Err(not_found(&name));
        }
        Ok(Database { name: Some(name), ..Default::default() })
    }
    fn handle_get_all_tables(&self, _db: String) -> thrift::Result<Vec<String>> {
        self.0.record("get_all_tables");
        Ok(vec!["events".into()])
    }
    fn handle_get_table(&self, db: String, tbl: String) -> thrift::Result<Table> {
        self.0.record("get_table");
        if tbl != "events" {
            return Err(not_found(&format!("{db}.{tbl}")));
        }
        Ok(sample_table(&db, &tbl))
    }
    fn handle_get_table_req(&self, req: GetTableRequest) -> thrift::Result<GetTableResult> {
        self.0.record("get_table_req");
        if self.0.legacy {
            // What a Java Thrift server answers for a method it does not have.
            let e = ApplicationError::new(ApplicationErrorKind::UnknownMethod, "Invalid method name: 'get_table_req'");
            return Err(thrift::Error::Application(e));
        }
        if req.tbl_name != "events" {
            return Err(not_found(&format!("{}.{}", req.db_name, req.tbl_name)));
        }
        Ok(GetTableResult::new(sample_table(&req.db_name, &req.tbl_name)))
    }
    fn handle_get_table_objects_by_name(&self, db: String, names: Vec<String>) -> thrift::Result<Vec<Table>> {
        self.0.record("get_table_objects_by_name");
        Ok(names.iter().filter(|n| *n == "events").map(|n| sample_table(&db, n)).collect())
    }
    fn handle_get_partitions(&self, db: String, tbl: String, max_parts: i16) -> thrift::Result<Vec<Partition>> {
        self.0.record(&format!("get_partitions {max_parts}"));
        Ok(vec![Partition { values: Some(vec!["2024-01-01".into()]), db_name: Some(db), table_name: Some(tbl), ..Default::default() }])
    }
    fn handle_get_partition_names(&self, _db: String, _tbl: String, max_parts: i16) -> thrift::Result<Vec<String>> {
        self.0.record(&format!("get_partition_names {max_parts}"));
        Ok(vec!["dt=2024-01-01".into(), "dt=2024-01-02".into()])
    }
    fn handle_get_partition_names_ps(&self, _db: String, _tbl: String, part_vals: Vec<String>, _max: i16) -> thrift::Result<Vec<String>> {
        self.0.record("get_partition_names_ps");
        Ok(part_vals.iter().map(|v| format!("dt={v}")).collect())
    }
    fn handle_get_partitions_by_filter(&self, _db: String, _tbl: String, filter: String, _max: i16) -> thrift::Result<Vec<Partition>> {
        self.0.record("get_partitions_by_filter");
        if filter.contains(" in ") {
            return Err(MetaException::new("Error parsing partition filter; lexer error".to_string()).into());
        }
        Ok(vec![])
    }
    fn handle_get_partitions_by_names(&self, _db: String, _tbl: String, names: Vec<String>) -> thrift::Result<Vec<Partition>> {
        self.0.record("get_partitions_by_names");
        Ok(names.into_iter().map(|n| Partition { values: Some(vec![n]), ..Default::default() }).collect())
    }
}

struct FakeServer {
    uri: String,
    state: Arc<State>,
}

/// Serves on a loopback port until the test process ends; each connection on a
/// thread of its own, closed after `close_after` calls when given.
fn fake(transport: Transport, legacy: bool, close_after: Option<usize>) -> FakeServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let uri = format!("thrift://{}", listener.local_addr().unwrap());
    let state = Arc::new(State { legacy, ..Default::default() });
    let shared = state.clone();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            shared.connections.fetch_add(1, Ordering::SeqCst);
            let state = shared.clone();
            thread::spawn(move || serve(stream, transport, state, close_after));
        }
    });
    FakeServer { uri, state }
}

fn serve(stream: TcpStream, transport: Transport, state: Arc<State>, close_after: Option<usize>) {
    let processor = ThriftHiveMetastoreSyncProcessor::new(Fake(state));
    let reader = stream.try_clone().unwrap();
    let (input, output): (Box<dyn Read + Send>, Box<dyn Write + Send>) = match transport {
        Transport::Buffered => (Box::new(TBufferedReadTransport::new(reader)), Box::new(TBufferedWriteTransport::new(stream))),
        Transport::Framed => (Box::new(TFramedReadTransport::new(reader)), Box::new(TFramedWriteTransport::new(stream))),
    };
    let mut i = TBinaryInputProtocol::new(input, false);
    let mut o = TBinaryOutputProtocol::new(output, true);
    let mut served = 0;
    while processor.process(&mut i, &mut o).is_ok() {
        served += 1;
        if close_after == Some(served) {
            break;
        }
    }
}

fn dead_uri() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    format!("thrift://{}", listener.local_addr().unwrap())
}

fn timeouts() -> Timeouts {
    Timeouts { connect: Duration::from_secs(2), rpc: Duration::from_secs(5) }
}

#[test]
fn every_call_returns_the_metastores_answer() {
    let server = fake(Transport::Buffered, false, None);
    let mut c = HmsClient::connect(std::slice::from_ref(&server.uri), Transport::Buffered, timeouts()).unwrap();
    assert_eq!(c.endpoint(), Some(server.uri.as_str()));
    assert_eq!(c.all_databases().unwrap(), ["default", "sales"]);
    assert_eq!(c.database("sales").unwrap().name.as_deref(), Some("sales"));
    assert_eq!(c.all_tables("sales").unwrap(), ["events"]);
    assert_eq!(c.get_table("sales", "events").unwrap(), sample_table("sales", "events"));
    assert_eq!(c.tables_by_name("sales", &["events".into(), "nope".into()]).unwrap().len(), 1);
    assert_eq!(c.partition_names("sales", "events").unwrap(), ["dt=2024-01-01", "dt=2024-01-02"]);
    assert_eq!(c.partition_names_ps("sales", "events", &["x".into()]).unwrap(), ["dt=x"]);
    assert!(c.partitions_by_filter("sales", "events", "dt = 'x'").unwrap().is_empty());
    assert_eq!(c.partitions_by_names("sales", "events", &["dt=a".into()]).unwrap()[0].values, Some(vec!["dt=a".into()]));
    assert_eq!(c.partitions("sales", "events").unwrap().len(), 1);
    // max_parts -1 (all), one connection for everything.
    assert!(server.state.calls().contains(&"get_partitions -1".to_string()));
    assert_eq!(server.state.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn framed_transport() {
    let server = fake(Transport::Framed, false, None);
    let mut c = HmsClient::connect(std::slice::from_ref(&server.uri), Transport::Framed, timeouts()).unwrap();
    assert_eq!(c.all_databases().unwrap(), ["default", "sales"]);
    assert_eq!(c.get_table("sales", "events").unwrap().table_name.as_deref(), Some("events"));
}

#[test]
fn not_found_and_meta_exceptions_keep_the_connection() {
    let server = fake(Transport::Buffered, false, None);
    let mut c = HmsClient::new(std::slice::from_ref(&server.uri), Transport::Buffered, timeouts()).unwrap();
    assert!(!c.is_connected());
    let e = c.get_table("sales", "missing").unwrap_err();
    assert_eq!((e.kind, e.retryable), (ErrorKind::NotFound, false));
    assert!(e.message.contains("sales.missing"), "{}", e.message);
    let e = c.database("nope").unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    let e = c.partitions_by_filter("sales", "events", "dt in ('a')").unwrap_err();
    assert_eq!((e.kind, e.retryable), (ErrorKind::MetaException, false));
    assert!(e.message.contains("Error parsing partition filter"), "{}", e.message);
    assert!(c.is_connected());
    c.all_databases().unwrap();
    assert_eq!(server.state.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn get_table_falls_back_to_the_legacy_call_once() {
    let server = fake(Transport::Buffered, true, None);
    let mut c = HmsClient::connect(std::slice::from_ref(&server.uri), Transport::Buffered, timeouts()).unwrap();
    assert_eq!(c.get_table("sales", "events").unwrap().db_name.as_deref(), Some("sales"));
    assert_eq!(c.get_table("sales", "missing").unwrap_err().kind, ErrorKind::NotFound);
    assert_eq!(server.state.calls(), ["get_table_req", "get_table", "get_table"]);
    assert_eq!(server.state.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn failover_to_the_next_uri() {
    let server = fake(Transport::Buffered, false, None);
    let uris = [dead_uri(), server.uri.clone()];
    let mut c = HmsClient::connect(&uris, Transport::Buffered, timeouts()).unwrap();
    assert_eq!(c.endpoint(), Some(server.uri.as_str()));
    c.all_databases().unwrap();
}

#[test]
fn no_metastore_is_a_retryable_connect_error_naming_every_uri() {
    let uris = [dead_uri(), dead_uri()];
    let e = HmsClient::connect(&uris, Transport::Buffered, timeouts()).unwrap_err();
    assert_eq!((e.kind, e.retryable), (ErrorKind::Connect, true));
    assert!(e.message.contains(&uris[0]) && e.message.contains(&uris[1]), "{}", e.message);
    // A lazy client fails the same way on its first call.
    let mut c = HmsClient::new(&uris, Transport::Buffered, timeouts()).unwrap();
    assert_eq!(c.all_databases().unwrap_err().kind, ErrorKind::Connect);
}

#[test]
fn a_slow_answer_times_out_and_the_next_call_reconnects() {
    let server = fake(Transport::Buffered, false, None);
    let t = Timeouts { connect: Duration::from_secs(2), rpc: Duration::from_millis(300) };
    let mut c = HmsClient::connect(std::slice::from_ref(&server.uri), Transport::Buffered, t).unwrap();
    *server.state.delay.lock() = Some(Duration::from_millis(1500));
    let started = std::time::Instant::now();
    let e = c.all_databases().unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(1200), "{:?}", started.elapsed());
    assert_eq!((e.kind, e.retryable), (ErrorKind::Timeout, true), "{}", e.message);
    assert!(!c.is_connected());
    assert_eq!(c.all_databases().unwrap(), ["default", "sales"]);
    assert_eq!(server.state.connections.load(Ordering::SeqCst), 2);
}

#[test]
fn a_connection_the_metastore_closed_is_reopened_transparently() {
    // The server hangs up after every answer, like a restarted metastore or a
    // proxy cutting idle connections.
    let server = fake(Transport::Buffered, false, Some(1));
    let mut c = HmsClient::connect(std::slice::from_ref(&server.uri), Transport::Buffered, timeouts()).unwrap();
    for _ in 0..3 {
        assert_eq!(c.all_tables("sales").unwrap(), ["events"]);
        // Let the server's close reach us before the next call.
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(server.state.connections.load(Ordering::SeqCst), 3);
}

#[test]
fn client_is_send() {
    fn send<T: Send>() {}
    send::<HmsClient>();
}
