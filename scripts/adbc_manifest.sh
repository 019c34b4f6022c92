#!/usr/bin/env bash
# Writes an ADBC driver manifest for Pond's driver, so driver managers load it
# by name (`driver="pond"`):
#   scripts/adbc_manifest.sh            # into the project venv: $POND_VENV/etc/adbc/drivers/pond.toml
#   scripts/adbc_manifest.sh DIR        # into DIR (e.g. ~/.config/adbc/drivers or /etc/adbc/drivers)
# Python's adbc-driver-manager searches <venv>/etc/adbc/drivers when run from a
# venv; every driver manager searches $ADBC_DRIVER_PATH, ~/.config/adbc/drivers
# and /etc/adbc/drivers.
set -euo pipefail
source "$(dirname "$0")/env.sh"
dir="${1:-$POND_VENV/etc/adbc/drivers}"
lib="$CARGO_TARGET_DIR/release/libadbc_driver_pond.so"
case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64) arch=arm64 ;;
  *) arch="$(uname -m)" ;;
esac
mkdir -p "$dir"
cat >"$dir/pond.toml" <<TOML
manifest_version = 1
name = 'Pond'
publisher = 'Pond'
version = '$(sed -n 's/^version = "\(.*\)"/\1/p' "$POND_ROOT/Cargo.toml" | head -1)'

[ADBC]
version = '1.1.0'

[Driver]
entrypoint = 'AdbcDriverPondInit'

[Driver.shared]
linux_$arch = '$lib'
TOML
echo "wrote $dir/pond.toml (driver: $lib)" >&2
