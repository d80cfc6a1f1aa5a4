#!/usr/bin/env bash
# README command 2: install what is missing, then run the whole test suite (what CI runs).
# Tiers: static checks and unit tests, integration (real sockets and processes), e2e (real agent,
# real gVisor sandboxes). Nothing is skipped: a missing prerequisite fails the run.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
bash scripts/setup.sh

printf '\n==> test packages\n'
# The OCI import tests (test/e2e/oci-import.e2e.test.ts) run registries of their own (Debian's
# docker-registry, distribution 2.8, on free 127.0.0.1 ports), with htpasswd from apache2-utils, and
# build a busybox-only image from busybox-static.
test_packages=(docker-registry apache2-utils busybox-static)
missing=()
for p in "${test_packages[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# The package's own service (port 5000, /var/lib/docker-registry) is not the tests': off where systemd runs.
if [ -d /run/systemd/system ] && systemctl is-enabled --quiet docker-registry 2>/dev/null; then
  systemctl disable --now docker-registry
fi
echo "present: ${test_packages[*]}"

printf '\n==> test services\n'
# shellcheck source=scripts/test-postgres.sh
source scripts/test-postgres.sh
bash scripts/test-python.sh

printf '\n==> generated code is current\n'
before=$(mktemp -d)
generated=(packages/contracts/src/gen packages/sdk/src/gen)
for dir in "${generated[@]}"; do mkdir -p "$before/$dir" && cp -a "$dir/." "$before/$dir/"; done
bash scripts/gen.sh
for dir in "${generated[@]}"; do
  if ! diff -r "$before/$dir" "$dir" >/dev/null; then
    diff -r "$before/$dir" "$dir" | head -20
    rm -rf "$before"
    echo "generated code in $dir is stale: run 'npm run gen' and commit the result" >&2
    exit 1
  fi
done
rm -rf "$before"

printf '\n==> typecheck, lint, unit tests\n'
npm run --silent check

printf '\n==> integration tests\n'
npm run --silent test:integration

printf '\n==> end-to-end tests (real agent, real gVisor sandboxes)\n'
npm run --silent test:e2e
