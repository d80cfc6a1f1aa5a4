#!/usr/bin/env bash
# README command 1: install what is missing, then run Wrenn on this machine.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bash "$repo/scripts/setup.sh"
printf '\n==> starting Wrenn\n'
exec node "$repo/apps/cli/bin/wrenn.js" up
