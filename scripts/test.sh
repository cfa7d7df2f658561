#!/usr/bin/env bash
# The test command (npm test): installs what is missing, builds, typechecks, runs unit then
# integration tests. Needs root: integration tests mount overlays and run runc.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system-deps.sh
[ -d node_modules ] || npm ci --no-audit --no-fund
npx tsc -p tsconfig.json --noEmit
npx tsc -p tsconfig.build.json
npx jest --selectProjects unit
npx jest --selectProjects integration --runInBand
