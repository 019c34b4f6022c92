"""Hand-built protobuf messages for Flight SQL commands (no generated code needed).

Only the handful of messages the tests send: each is a few length-delimited fields,
wrapped in google.protobuf.Any as Flight SQL requires.
"""

from __future__ import annotations

SQL_PREFIX = "type.googleapis.com/arrow.flight.protocol.sql."


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_bytes(number: int, data: bytes) -> bytes:
    return varint((number << 3) | 2) + varint(len(data)) + data


def field_varint(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


def any_msg(type_name: str, payload: bytes) -> bytes:
    return field_bytes(1, (SQL_PREFIX + type_name).encode()) + field_bytes(2, payload)


def statement_query(sql: str, transaction_id: bytes | None = None) -> bytes:
    payload = field_bytes(1, sql.encode())
    if transaction_id:
        payload += field_bytes(2, transaction_id)
    return any_msg("CommandStatementQuery", payload)


def statement_update(sql: str) -> bytes:
    return any_msg("CommandStatementUpdate", field_bytes(1, sql.encode()))


def get_catalogs() -> bytes:
    return any_msg("CommandGetCatalogs", b"")


def get_db_schemas(catalog: str | None = None) -> bytes:
    return any_msg("CommandGetDbSchemas", field_bytes(1, catalog.encode()) if catalog else b"")


def get_sql_info(*ids: int) -> bytes:
    # repeated uint32 info = 1 (packed)
    packed = b"".join(varint(i) for i in ids)
    return any_msg("CommandGetSqlInfo", field_bytes(1, packed) if ids else b"")


def _table_ref(command: str, table: str, catalog: str | None, schema: str | None) -> bytes:
    """CommandGetPrimaryKeys/ExportedKeys/ImportedKeys: catalog = 1, db_schema = 2, table = 3."""
    payload = b""
    if catalog is not None:
        payload += field_bytes(1, catalog.encode())
    if schema is not None:
        payload += field_bytes(2, schema.encode())
    payload += field_bytes(3, table.encode())
    return any_msg(command, payload)


def get_primary_keys(table: str, catalog: str | None = None, schema: str | None = None) -> bytes:
    return _table_ref("CommandGetPrimaryKeys", table, catalog, schema)


def get_exported_keys(table: str, catalog: str | None = None, schema: str | None = None) -> bytes:
    return _table_ref("CommandGetExportedKeys", table, catalog, schema)


def get_imported_keys(table: str, catalog: str | None = None, schema: str | None = None) -> bytes:
    return _table_ref("CommandGetImportedKeys", table, catalog, schema)


def get_xdbc_type_info() -> bytes:
    return any_msg("CommandGetXdbcTypeInfo", b"")


def cancel_flight_info_request(serialized_flight_info: bytes) -> bytes:
    # arrow.flight.protocol.CancelFlightInfoRequest { FlightInfo info = 1; }
    return field_bytes(1, serialized_flight_info)


def parse_fields(data: bytes) -> dict[int, list]:
    """Minimal protobuf decoder: field number -> list of values (ints or bytes)."""
    out: dict[int, list] = {}
    i = 0

    def read_varint():
        nonlocal i
        shift = result = 0
        while True:
            b = data[i]
            i += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    while i < len(data):
        key = read_varint()
        num, wire = key >> 3, key & 7
        if wire == 0:
            val = read_varint()
        elif wire == 2:
            n = read_varint()
            val = data[i:i + n]
            i += n
        elif wire == 1:
            val = data[i:i + 8]
            i += 8
        elif wire == 5:
            val = data[i:i + 4]
            i += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        out.setdefault(num, []).append(val)
    return out


def set_session_options_request(options: dict[str, str]) -> bytes:
    """SetSessionOptionsRequest { map<string, SessionOptionValue> session_options = 1; } (string values)."""
    out = b""
    for key, value in options.items():
        option_value = field_bytes(1, value.encode())  # SessionOptionValue.string_value = 1
        entry = field_bytes(1, key.encode()) + field_bytes(2, option_value)
        out += field_bytes(1, entry)
    return out


def parse_session_options(data: bytes) -> dict[str, object]:
    """GetSessionOptionsResult { map<string, SessionOptionValue> session_options = 1; } -> {key: value}."""
    result = {}
    for entry in parse_fields(data).get(1, []):
        f = parse_fields(entry)
        key = f[1][0].decode()
        value_fields = parse_fields(f.get(2, [b""])[0])
        if 1 in value_fields:
            result[key] = value_fields[1][0].decode()
        elif 2 in value_fields:
            result[key] = bool(value_fields[2][0])
        else:
            result[key] = value_fields
    return result


def get_cross_reference(pk_table: str, fk_table: str, catalog: str | None = None, schema: str | None = None) -> bytes:
    payload = b""
    if catalog is not None:
        payload += field_bytes(1, catalog.encode())
    if schema is not None:
        payload += field_bytes(2, schema.encode())
    payload += field_bytes(3, pk_table.encode())
    if catalog is not None:
        payload += field_bytes(4, catalog.encode())
    if schema is not None:
        payload += field_bytes(5, schema.encode())
    payload += field_bytes(6, fk_table.encode())
    return any_msg("CommandGetCrossReference", payload)


def cancel_query_request(serialized_flight_info: bytes) -> bytes:
    """Any(ActionCancelQueryRequest { bytes info = 1; }) (the deprecated Flight SQL CancelQuery action)."""
    return any_msg("ActionCancelQueryRequest", field_bytes(1, serialized_flight_info))


def unpack_any(data: bytes) -> tuple[str, bytes]:
    f = parse_fields(data)
    return f.get(1, [b""])[0].decode(), f.get(2, [b""])[0]


def create_prepared_statement(sql: str) -> bytes:
    """Body of the CreatePreparedStatement action: Any(ActionCreatePreparedStatementRequest { query = 1 })."""
    return any_msg("ActionCreatePreparedStatementRequest", field_bytes(1, sql.encode()))


def parse_prepared_statement_result(body: bytes) -> tuple[bytes, bytes, bytes]:
    """Any(ActionCreatePreparedStatementResult) -> (handle, dataset_schema, parameter_schema) as IPC bytes."""
    _, payload = unpack_any(body)
    f = parse_fields(payload)
    return f.get(1, [b""])[0], f.get(2, [b""])[0], f.get(3, [b""])[0]


def prepared_statement_query(handle: bytes) -> bytes:
    """Any(CommandPreparedStatementQuery { prepared_statement_handle = 1 }): DoPut binds, GetFlightInfo runs."""
    return any_msg("CommandPreparedStatementQuery", field_bytes(1, handle))


def close_prepared_statement(handle: bytes) -> bytes:
    """Body of the ClosePreparedStatement action."""
    return any_msg("ActionClosePreparedStatementRequest", field_bytes(1, handle))
