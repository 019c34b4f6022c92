#!/usr/bin/env python3
"""Turns a shared library into a DuckDB extension file by appending DuckDB's
512-byte metadata footer.

DuckDB reads the last 512 bytes of an extension: 256 bytes of eight 32-byte,
NUL-padded text fields, then 256 bytes of signature. The fields are stored
last-first: the final field block is the magic value "4", before it the
platform, the DuckDB (or C API) version, the extension version, and the ABI
type; the first three blocks are unused. An unsigned extension has a zeroed
signature and loads only with allow_unsigned_extensions.

ABI types: C_STRUCT (the stable C API; the version field is the minimum C API
version, e.g. v1.2.0) and C_STRUCT_UNSTABLE (the C API including its unstable
part; the version field is the one DuckDB version that may load it).
"""
import argparse
import shutil
import sys

FIELD = 32
SIGNATURE = 256


def field(text: str) -> bytes:
    raw = text.encode("ascii")
    if len(raw) > FIELD:
        sys.exit(f"append_metadata: '{text}' is longer than {FIELD} bytes")
    return raw.ljust(FIELD, b"\0")


def footer(platform: str, version: str, extension_version: str, abi: str) -> bytes:
    # In file order: unused x3, ABI type, extension version, version, platform, magic.
    fields = [b"\0" * FIELD] * 3 + [field(abi), field(extension_version), field(version), field(platform), field("4")]
    out = b"".join(fields) + b"\0" * SIGNATURE
    assert len(out) == 512
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("library", help="the built shared library (.so)")
    p.add_argument("output", help="the .duckdb_extension file to write")
    p.add_argument("--platform", default="linux_amd64")
    p.add_argument("--duckdb-version", default="v1.5.5", help="DuckDB version (C_STRUCT_UNSTABLE) or C API version (C_STRUCT)")
    p.add_argument("--extension-version", default="v0.1.0")
    p.add_argument("--abi", default="C_STRUCT_UNSTABLE", choices=["C_STRUCT", "C_STRUCT_UNSTABLE"])
    a = p.parse_args()
    tmp = a.output + ".tmp"
    shutil.copyfile(a.library, tmp)
    with open(tmp, "ab") as f:
        f.write(footer(a.platform, a.duckdb_version, a.extension_version, a.abi))
    shutil.move(tmp, a.output)
    print(f"{a.output}: DuckDB {a.duckdb_version} {a.platform}, {a.abi}, extension {a.extension_version}")


if __name__ == "__main__":
    main()
