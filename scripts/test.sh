#!/usr/bin/env bash
# The test command (npm test): installs what is missing, builds, typechecks, runs the unit
# tests, then the integration tests (real runc, overlayfs, registry, TLS, and the BuildKit
# reference for conformance: needs root), and prints one 'N passed, N failed' line.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system-deps.sh || exit 1
[ -d node_modules ] || npm ci --no-audit --no-fund || exit 1
npx tsc -p tsconfig.json --noEmit || exit 1
npx tsc -p tsconfig.build.json || exit 1
export BUILDD_TEST_BUILT=1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
npx jest --selectProjects unit --json --outputFile "$out/unit.json" "$@"; unit=$?
npx jest --selectProjects integration --runInBand --json --outputFile "$out/integration.json" "$@"; integration=$?
node -e '
  let passed = 0, failed = 0;
  for (const f of process.argv.slice(1)) {
    try { const r = require(f); passed += r.numPassedTests; failed += r.numFailedTests + r.numRuntimeErrorTestSuites; } catch { failed++; }
  }
  console.log(`${passed} passed, ${failed} failed`);
' "$out/unit.json" "$out/integration.json"
[ $unit -eq 0 ] && [ $integration -eq 0 ]
