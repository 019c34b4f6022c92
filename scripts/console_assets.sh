#!/usr/bin/env bash
# Builds the web console's third-party bundles (CodeMirror, apache-arrow, uPlot)
# from crates/pond-console/web/package-lock.json into crates/pond-console/web/dist,
# which the pond-console crate embeds at compile time. node_modules and dist are
# git-ignored; the same lockfile gives the same bundles. Needs Node 18+ and npm.
set -euo pipefail
web="$(cd "$(dirname "$0")/../crates/pond-console/web" && pwd)"
cd "$web"
if ! command -v npm >/dev/null; then
  echo "npm is missing: install Node.js 18+ (Debian: apt-get install nodejs npm) to build the web console's libraries" >&2
  exit 1
fi
# npm ci only when the lockfile changed since the last install (a stamp in node_modules).
stamp=node_modules/.pond-lock.sha256
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi
node build.mjs
echo "web console libraries built into $web/dist" >&2
