#!/usr/bin/env bash
# Installs everything Wrenn needs on this host, idempotently: Debian packages, gVisor's runsc, the npm
# workspace, the envd bundle and the `base` image. Both README commands run it first.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
export WRENN_DIR=${WRENN_DIR:-/var/lib/wrenn}
# The gVisor version we test against (a pseudo-version of gVisor's Go-buildable `go` branch).
GVISOR_VERSION=${WRENN_GVISOR_VERSION:-v0.0.0-20260905035102-160fafc42237}

step() { printf '\n==> %s\n' "$*"; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root: Wrenn manages namespaces, mounts and runsc"
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
[ "$node_major" -ge 20 ] || die "Node.js 20 or newer is required (found: $(node --version 2>/dev/null || echo none))"

step "Debian packages"
# chromium: benches render their plots with it (playwright-core), and the dashboard tests drive it.
# skopeo and umoci: ImportImage pulls and unpacks OCI images with them (docs/templates.md).
packages=(iproute2 iptables debootstrap tini e2fsprogs util-linux mount ca-certificates python3 make g++ chromium
  skopeo umoci)
missing=()
for p in "${packages[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "all present"
fi

step "gVisor runsc"
# A runsc is new enough when it has the save/restore features pause needs (e.g. --net-disconnect-ok).
capable() { "$1" flags 2>/dev/null | grep -q -- '-net-disconnect-ok'; }
mkdir -p "$WRENN_DIR/bin"
runsc_stamp="$WRENN_DIR/bin/runsc.version"
if [ -x "$WRENN_DIR/bin/runsc" ] && [ "$(cat "$runsc_stamp" 2>/dev/null)" = "$GVISOR_VERSION" ]; then
  echo "runsc $GVISOR_VERSION already built at $WRENN_DIR/bin/runsc"
elif command -v runsc >/dev/null && capable "$(command -v runsc)"; then
  ln -sf "$(command -v runsc)" "$WRENN_DIR/bin/runsc"
  echo "using runsc on PATH: $(command -v runsc)" | tee "$runsc_stamp"
elif command -v go >/dev/null || [ -x /usr/local/go/bin/go ]; then
  go=$(command -v go || echo /usr/local/go/bin/go)
  echo "building runsc $GVISOR_VERSION from gVisor's Go module (a few minutes on 2 cores)"
  # Static: runsc re-executes itself inside an empty chroot, where no dynamic loader exists.
  # -v names each package as it is built: one progress line per 100 of them.
  CGO_ENABLED=0 GOBIN="$WRENN_DIR/bin" GOFLAGS=-buildvcs=false "$go" install -v "gvisor.dev/gvisor/runsc@$GVISOR_VERSION" 2>&1 |
    awk '/^go: / { print; next } { n++; if (n % 100 == 0) printf "  built %d packages\n", n } END { printf "  built %d packages\n", n }'
  echo "$GVISOR_VERSION" >"$runsc_stamp"
else
  echo "no Go toolchain: falling back to Debian's runsc (pause/resume will be reported as unsupported)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q runsc
  ln -sf /usr/bin/runsc "$WRENN_DIR/bin/runsc"
  echo "debian" >"$runsc_stamp"
fi
"$WRENN_DIR/bin/runsc" --version | head -2

step "npm workspace"
cd "$repo"
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat node_modules/.wrenn-lock-hash 2>/dev/null)" != "$lock_hash" ]; then
  # node-pty compiles against the headers of the Node.js that runs it.
  [ -d /usr/include/node ] && export npm_config_nodedir=/usr
  npm ci --no-audit --no-fund
  echo "$lock_hash" >node_modules/.wrenn-lock-hash
else
  echo "node_modules up to date"
fi

step "envd bundle"
npm run --silent build

step "base image"
bash "$repo/scripts/build-image.sh" base
