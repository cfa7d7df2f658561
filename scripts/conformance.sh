#!/usr/bin/env bash
# The project's conformance harness (test/conformance/harness) by hand, as root:
#
#   bash scripts/conformance.sh run [CASE_DIR ...]   build each case with the reference (BuildKit
#                          inside Debian's dockerd) and with buildd, compare file by file, config
#                          field by field and history; default: test/conformance/cases/* and, where
#                          it exists, ../shared/conformance/cases/*. Details under $OUT
#                          (default /tmp/buildd-conformance-out).
#   bash scripts/conformance.sh reference start|stop|env   the reference world, kept running
#                          between runs (a run starts what is missing and stops that again)
#   bash scripts/conformance.sh compare REFERENCE CANDIDATE | flatten IMAGE
#
# `run` starts a buildd of its own (fresh root, mutual TLS, free loopback port) and stops it at
# the end, unless $BUILDCTL gives the command line of a running one's buildctl, e.g.
#   BUILDCTL="node bin/buildctl.js --addr tcp://127.0.0.1:1234 --tlsdir .state/certs/client"
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
[ -d node_modules ] || npm ci --no-audit --no-fund
npx tsc -p test/conformance/harness/tsconfig.json
harness() { node "$repo/.state/conformance-harness/test/conformance/harness/cli.js" "$@"; }

if [ "${1:-}" = reference ] && [ "${2:-}" = start ]; then
  harness "$@"
  # the registry is up: localhost:5000/busybox:multi (linux/amd64 + linux/arm64), the base of the
  # multi-platform cases (quick when it is there already)
  bash scripts/multiarch-busybox.sh 127.0.0.1:5000
  exit
fi
if [ "${1:-}" != run ] || [ -n "${BUILDCTL:-}" ]; then
  harness "$@"
  exit
fi

npm run build >/dev/null   # always: a dist/ from before a pull would run stale code
state=$repo/.state
[ -f "$state/certs/client/cert.pem" ] || bash certs/make-certs.sh "$state/certs" >/dev/null
work=$(mktemp -d)
port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
node bin/buildd.js --addr "tcp://127.0.0.1:$port" --root "$work/root" --tlscacert "$state/certs/daemon/ca.pem" \
  --tlscert "$state/certs/daemon/cert.pem" --tlskey "$state/certs/daemon/key.pem" >"$work/buildd.log" 2>&1 &
daemon=$!
trap 'kill -TERM $daemon 2>/dev/null; wait $daemon 2>/dev/null || true; rm -rf "$work"' EXIT
export BUILDCTL="node $repo/bin/buildctl.js --addr tcp://127.0.0.1:$port --tlsdir $state/certs/client"
for _ in $(seq 100); do
  $BUILDCTL debug info >/dev/null 2>&1 && break
  kill -0 $daemon 2>/dev/null || { cat "$work/buildd.log" >&2; exit 1; }
  sleep 0.1
done
harness "$@"
