#!/usr/bin/env bash
# Side by side with BuildKit (the reference dockerd of ../shared/conformance), in one run:
#   - cold build time (no cache) and warm rebuild time of each case, ours and the reference's;
#   - buildd's peak memory (VmHWM) after building a context with one large file, to show that
#     memory does not grow with what is built (everything streams).
#
#   bench/compare-cases.sh [CASE_DIR ...]     default: the shared cases v01-v07 and test/conformance/cases/c0*
#   BIG_MB=512 bench/compare-cases.sh          size of the large-file build (default 256)
# Needs root and ../shared/conformance/reference.sh start. Prints a table; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
shared=$repo/../shared/conformance
BIG_MB=${BIG_MB:-256}
eval "$("$shared/reference.sh" env)"
[ $# -gt 0 ] || set -- "$shared"/cases/v0[1-7]*/ test/conformance/cases/c0*/
npm run build >/dev/null
work=$(mktemp -d)
bash certs/make-certs.sh "$work/certs" >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
node bin/buildd.js --addr "tcp://127.0.0.1:$port" --root "$work/root" --tlscacert "$work/certs/daemon/ca.pem" \
  --tlscert "$work/certs/daemon/cert.pem" --tlskey "$work/certs/daemon/key.pem" 2>"$work/buildd.log" &
daemon=$!
trap 'kill -TERM $daemon 2>/dev/null; wait $daemon 2>/dev/null; rm -rf "$work"' EXIT
ours() { node bin/buildctl.js --addr "tcp://127.0.0.1:$port" --tlsdir "$work/certs/client" "$@"; }
for _ in $(seq 100); do ours debug info >/dev/null 2>&1 && break; sleep 0.1; done

seconds() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null 2>&1 || { echo FAIL; return; }; t1=$(date +%s.%N); python3 -c "print(f'{$t1-$t0:.2f}')"; }
args_of() { # target and build-args of a case, for both builders
  local dir=$1 a=$dir/args.json
  ref_args=(); our_args=()
  [ -f "$a" ] || return 0
  local t; t=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("target",""))' "$a")
  [ -n "$t" ] && ref_args+=(--target "$t") && our_args+=(--opt "target=$t")
  while read -r kv; do [ -n "$kv" ] && ref_args+=(--build-arg "$kv") && our_args+=(--opt "build-arg:$kv"); done \
    < <(python3 -c 'import json,sys; [print(f"{k}={v}") for k,v in json.load(open(sys.argv[1])).get("build-args",{}).items()]' "$a")
}

printf '%-28s %10s %10s %10s %10s\n' case 'ref cold' 'ours cold' 'ref warm' 'ours warm'
for dir in "$@"; do
  dir=$(cd "$dir" && pwd); args_of "$dir"
  rc=$(seconds env DOCKER_BUILDKIT=1 /usr/bin/docker build -q --no-cache --network=none "${ref_args[@]}" -t bench/x "$dir")
  oc=$(seconds ours build --frontend dockerfile.v0 --local "context=$dir" --local "dockerfile=$dir" --no-cache "${our_args[@]}")
  rw=$(seconds env DOCKER_BUILDKIT=1 /usr/bin/docker build -q --network=none "${ref_args[@]}" -t bench/x "$dir")
  ow=$(seconds ours build --frontend dockerfile.v0 --local "context=$dir" --local "dockerfile=$dir" "${our_args[@]}")
  printf '%-28s %10s %10s %10s %10s\n' "$(basename "$dir")" "$rc" "$oc" "$rw" "$ow"
done

big=$work/big; mkdir -p "$big"
head -c "$((BIG_MB * 1024 * 1024))" /dev/urandom > "$big/blob.bin"
printf 'FROM localhost:5000/busybox:latest\nCOPY blob.bin /blob.bin\nRUN cat /blob.bin | wc -c > /size\n' > "$big/Dockerfile"
before=$(awk '/VmHWM/{print $2}' /proc/$daemon/status)
t=$(seconds ours build --frontend dockerfile.v0 --local "context=$big" --local "dockerfile=$big" --output "type=oci,dest=$work/big.tar")
after=$(awk '/VmHWM/{print $2}' /proc/$daemon/status)
rt=$(seconds env DOCKER_BUILDKIT=1 /usr/bin/docker build -q --no-cache --network=none -t bench/big "$big")
echo
echo "large context (${BIG_MB} MiB file copied, run over, exported as OCI tar): ours ${t}s, reference ${rt}s (build only)"
echo "buildd peak RSS: $((before / 1024)) MiB before, $((after / 1024)) MiB after"
