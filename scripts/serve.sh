#!/usr/bin/env bash
# Builds Pond if needed and runs `pond serve` with the embedded defaults:
# data in ./pond-data, Flight SQL on 127.0.0.1:32010, HTTP on 127.0.0.1:8000.
# Extra arguments go to `pond serve` (see `pond serve --help`).
set -euo pipefail
source "$(dirname "$0")/env.sh"
"$(dirname "$0")/setup.sh" --serve
exec "$POND_BIN" serve --extension-dir "$POND_EXTENSION_DIR" "$@"
