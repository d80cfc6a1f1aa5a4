#!/usr/bin/env bash
# The one generator: protobuf → packages/contracts/src/gen (committed, never hand-edited).
# CI runs this and fails when `git diff` shows the committed output is stale.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$repo/node_modules/.bin:$PATH"
cd "$repo/packages/contracts"
buf lint
buf generate
