#!/usr/bin/env bash
# buildd's memory while it pushes a big image: builds an image with SIZE (default 1 GiB) of
# random data, which no compressor shrinks, and pushes it to the reference registry on loopback
# (127.0.0.1:5000 of ../shared/conformance/reference.sh). Prints the seconds it took and the
# daemon's peak RSS (VmHWM), which must not grow with the image: layers are diffed, compressed,
# hashed and uploaded as streams. Needs root and `reference.sh start`.
#
#   bench/push-rss.sh        SIZE=4G bench/push-rss.sh        KEEP=1 bench/push-rss.sh
# Asserts nothing: a benchmark, never a test.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-1G}
npm run build >/dev/null
work=$(mktemp -d)
bash certs/make-certs.sh "$work/certs" >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
node bin/buildd.js --addr "tcp://127.0.0.1:$port" --root "$work/root" --tlscacert "$work/certs/daemon/ca.pem" \
  --tlscert "$work/certs/daemon/cert.pem" --tlskey "$work/certs/daemon/key.pem" 2>>"$work/buildd.log" &
daemon=$!
trap 'kill -TERM $daemon 2>/dev/null; wait $daemon 2>/dev/null; [ -n "${KEEP:-}" ] && echo "kept $work" >&2 || rm -rf "$work"' EXIT
ours() { node bin/buildctl.js --addr "tcp://127.0.0.1:$port" --tlsdir "$work/certs/client" "$@"; }
for _ in $(seq 200); do ours debug info >/dev/null 2>&1 && break; sleep 0.05; done
mkdir -p "$work/ctx"
# busybox's head takes bytes only
printf 'FROM localhost:5000/busybox:latest\nRUN head -c %s /dev/urandom > /big\n' "$(numfmt --from=iec "$SIZE")" > "$work/ctx/Dockerfile"
t0=$(date +%s.%N)
ours build --frontend dockerfile.v0 --opt force-network-mode=none --local "context=$work/ctx" --local "dockerfile=$work/ctx" \
  --output "type=image,name=127.0.0.1:5000/bench/push-rss:$SIZE,push=true" >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; exit 1; }
t1=$(date +%s.%N)
hwm=$(awk '/VmHWM/{print $2}' "/proc/$daemon/status")
# what landed, read back by an independent client
size=$(skopeo inspect --raw --tls-verify=false "docker://127.0.0.1:5000/bench/push-rss:$SIZE" | python3 -c 'import json,sys; print(" ".join(str(l["size"]) for l in json.load(sys.stdin)["layers"]))')
python3 - "$t0" "$t1" "$hwm" "$SIZE" "$size" <<'PY'
import sys
t0, t1, hwm, want, sizes = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5].split()
print(f"pushed {want} of random data ({sum(map(int, sizes)) / 2**20:.0f} MiB in {len(sizes)} layers) in {t1 - t0:.1f} s; buildd peak RSS {hwm / 1024:.0f} MiB")
PY
