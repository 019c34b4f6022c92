#!/usr/bin/env bash
# Regenerates src/hms/hive_metastore.rs from hive_metastore.thrift. Needs the Thrift
# compiler 0.17 (Debian: apt-get install thrift-compiler), the version whose output
# the `thrift` 0.17 crate expects. The generated file is committed: builds and CI do
# not need the compiler.
set -euo pipefail
crate="$(cd "$(dirname "$0")/.." && pwd)"
cd "$crate"
version="$(thrift --version)"
case "$version" in
  *" 0.17."*) ;;
  *) echo "need the Thrift compiler 0.17, found: $version" >&2; exit 1 ;;
esac
thrift --gen rs -out src/hms/ thrift/hive_metastore.thrift
out=src/hms/hive_metastore.rs
{
  echo "// @generated from crates/pond-catalog/thrift/hive_metastore.thrift by"
  echo "// crates/pond-catalog/thrift/generate.sh, which runs ($version):"
  echo "//   thrift --gen rs -out src/hms/ thrift/hive_metastore.thrift"
  echo "// Do not edit by hand: change the .thrift file and run the script again."
  echo "//"
  cat "$out"
} > "$out.tmp"
mv "$out.tmp" "$out"
