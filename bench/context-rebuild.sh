#!/usr/bin/env bash
# The context scenarios of the Speed issue, ours only, for one or more builds of buildd (a repo
# dir each, built with `npm run build`), alternating, RUNS times (default 3), medians printed:
#   cold       a fresh daemon root, a 20,000-file ~80 MB context, COPY . /app then one RUN
#   unchanged  the same build again (every step cached; the context is what costs)
#   one-file   after rewriting one 4 KiB file
# Also the daemon's peak RSS. Needs root and a busybox at $BASE (default localhost:5000/busybox:latest,
# the reference registry of ../shared/conformance). Asserts nothing.
#   bench/context-rebuild.sh REPO_DIR [REPO_DIR ...]
set -euo pipefail
RUNS=${RUNS:-3}
BASE=${BASE:-localhost:5000/busybox:latest}
work=$(mktemp -d)
daemon=
cleanup() { [ -n "$daemon" ] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
bash "$(dirname "$0")/../certs/make-certs.sh" "$work/certs" >/dev/null
ctx=$work/ctx
python3 - "$ctx" <<'PY'
import os, sys
root = sys.argv[1]
for d in range(200):
    p = os.path.join(root, 'src', f'd{d:03}')
    os.makedirs(p)
    for f in range(100):
        with open(os.path.join(p, f'f{f:03}.txt'), 'wb') as fh:
            fh.write(os.urandom(2048) + bytes(2048))
PY
printf 'FROM %s\nCOPY . /app\nRUN find /app -type f | wc -l > /count\n' "$BASE" > "$ctx/Dockerfile"

seconds() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null 2>&1 || { echo FAIL; return; }; t1=$(date +%s.%N); python3 -c "print(f'{$t1-$t0:.2f}')"; }
declare -A times
for run in $(seq "$RUNS"); do
  for repo in "$@"; do
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    rm -rf "$work/root" "$work/home"; mkdir -p "$work/home"
    node "$repo/bin/buildd.js" --addr "tcp://127.0.0.1:$port" --root "$work/root" --tlscacert "$work/certs/daemon/ca.pem" \
      --tlscert "$work/certs/daemon/cert.pem" --tlskey "$work/certs/daemon/key.pem" 2>"$work/buildd.log" &
    daemon=$!
    ours() { HOME=$work/home XDG_CONFIG_HOME=$work/home/.config node "$repo/bin/buildctl.js" --addr "tcp://127.0.0.1:$port" --tlsdir "$work/certs/client" "$@"; }
    for _ in $(seq 100); do ours debug info >/dev/null 2>&1 && break; sleep 0.1; done
    b() { ours build --frontend dockerfile.v0 --local "context=$ctx" --local "dockerfile=$ctx"; }
    c=$(seconds b); u=$(seconds b)
    head -c 4096 /dev/urandom > "$ctx/src/d100/f050.txt"
    o=$(seconds b)
    rss=$(awk '/VmHWM/{print $2}' /proc/$daemon/status)
    times[$repo,cold]+="$c "; times[$repo,unchanged]+="$u "; times[$repo,one-file]+="$o "; times[$repo,rss]+="$((rss / 1024)) "
    echo "run $run $(basename "$repo"): cold $c unchanged $u one-file $o peak RSS $((rss / 1024)) MiB" >&2
    kill -TERM "$daemon"; wait "$daemon" 2>/dev/null || true; daemon=
    [ -n "${KEEP_LOGS:-}" ] && cp "$work/buildd.log" "$KEEP_LOGS/buildd-$(basename "$repo")-$run.log"
  done
done
median() { python3 -c 'import sys,statistics; v=[float(x) for x in sys.argv[1:] if x!="FAIL"]; print(f"{statistics.median(v):.2f}" if v else "FAIL")' "$@"; }
printf '%-40s %10s %10s %10s %12s\n' build cold unchanged one-file 'peak RSS MiB'
for repo in "$@"; do
  # shellcheck disable=SC2086
  printf '%-40s %10s %10s %10s %12s\n' "$(basename "$repo")@$(git -C "$repo" rev-parse --short HEAD)" \
    "$(median ${times[$repo,cold]})" "$(median ${times[$repo,unchanged]})" "$(median ${times[$repo,one-file]})" "$(median ${times[$repo,rss]})"
  echo "  runs: cold ${times[$repo,cold]}| unchanged ${times[$repo,unchanged]}| one-file ${times[$repo,one-file]}" >&2
done
