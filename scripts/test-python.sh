#!/usr/bin/env bash
# The virtual environment the E2B Python SDK suite runs from (test/python/.venv), made from
# test/python/requirements.txt and remade only when that file changes. Sourced by scripts/test.sh.
set -euo pipefail

py_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/test/python"
venv="$py_dir/.venv"
want=$(sha256sum "$py_dir/requirements.txt" | cut -d' ' -f1)
if [ "$(cat "$venv/.requirements-hash" 2>/dev/null)" = "$want" ]; then
  echo "python venv up to date ($venv)"
else
  rm -rf "$venv"
  # Debian's python3 keeps venv (and its pip) in a package of its own.
  if ! python3 -m venv "$venv" 2>/dev/null; then
    rm -rf "$venv"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-venv
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$py_dir/requirements.txt"
  echo "$want" >"$venv/.requirements-hash"
  echo "python venv made: $("$venv/bin/pip" freeze --disable-pip-version-check | grep -E '^(e2b|pytest)==' | tr '\n' ' ')"
fi
