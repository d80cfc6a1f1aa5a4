#!/usr/bin/env bash
# The one generator (committed output, never hand-edited): protobuf → packages/contracts/src/gen, and
# the server's OpenAPI document → packages/sdk/src/gen (the typed client's types).
# CI runs this and fails when `git diff` shows the committed output is stale.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$repo/node_modules/.bin:$PATH"
cd "$repo/packages/contracts"
buf lint
buf generate
cd "$repo"
tsx scripts/openapi-types.ts
