#!/usr/bin/env bash
# The six scenarios of the speed issue, side by side with BuildKit (the reference dockerd of
# the conformance harness) in one run: each scenario alternates reference and buildd, ROUNDS times
# (default 3), and the table gives the medians in seconds and the ratio buildd/BuildKit.
#
#   1 cold: 3 independent stages (4,000 small files + 48 MiB each), a final stage copies all three
#   2 the same, fully cached
#   3 the same, cached, pushed to the registry on loopback (the reference: build, then docker push)
#   4 cold: a 20,000-file, 80 MB context, COPY . . then one RUN
#   5 the same context rebuilt unchanged (every step cached)
#   6 the same after changing one 4 KiB file
#   7 cold: a small two-platform build (linux/amd64 + linux/arm64, the arm64 RUN under QEMU):
#     buildd builds both at once into one index; the reference, whose docker exporter takes one
#     platform at a time, builds each (two runs, timed together)
#
# Cold means an empty cache and no base image: buildd restarts on an empty root, the reference
# prunes its build cache and removes the base image. Both keep what they build as an image
# (docker's image store; buildd's --output type=image). buildd's peak RSS (VmHWM, the daemon's plus its command
# helper's) over every daemon of the run is printed last. Needs root. The reference is the conformance harness's
# (scripts/conformance.sh reference start, run here when it is not serving; it stays up for the
# next run: scripts/conformance.sh reference stop ends it).
#
#   ROUNDS=5 bench/compare.sh      SCENARIOS="4 5 6" bench/compare.sh      KEEP=1 bench/compare.sh
# Asserts nothing: a benchmark, never a test.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
SCENARIOS=${SCENARIOS:-"1 2 3 4 5 6 7"}
bash scripts/conformance.sh reference start --no-debian >&2
eval "$(bash scripts/conformance.sh reference env)"
npm run build >/dev/null
work=$(mktemp -d)
bash certs/make-certs.sh "$work/certs" >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
daemon=""
peak_kib=0
stop_daemon() {
  [ -n "$daemon" ] || return 0
  local hwm helper; hwm=$(awk '/VmHWM/{print $2}' "/proc/$daemon/status" 2>/dev/null || echo 0)
  # the daemon's command helper (store/host-command.ts) counts with it
  helper=$(pgrep -P "$daemon" -x buildd-commands | head -1 || true)
  [ -n "$helper" ] && hwm=$(( ${hwm:-0} + $(awk '/VmHWM/{print $2}' "/proc/$helper/status" 2>/dev/null || echo 0) ))
  [ "${hwm:-0}" -gt "$peak_kib" ] && peak_kib=$hwm
  kill -TERM "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; daemon=""
}
start_daemon() { # $1: "fresh" starts on an empty root
  stop_daemon
  # The old root is set aside and removed after the run: deleting its ~50,000 inodes right
  # before a cold build made that build 2-3x slower on a journal-less ext4, whose allocator
  # skips inodes deleted in the last minute (ext4's recently_deleted()). That is the bench's
  # housekeeping, not a cold build's work; the reference's prune is how docker goes cold, so it
  # stays where it is. RM_ROOT=1 deletes in place as before.
  if [ "${1:-}" = fresh ] && [ -d "$work/root" ]; then
    if [ -n "${RM_ROOT:-}" ]; then rm -rf "$work/root"; else mkdir -p "$work/old-roots"; mv "$work/root" "$work/old-roots/$(date +%s%N)"; fi
  fi
  node bin/buildd.js --addr "tcp://127.0.0.1:$port" --root "$work/root" --tlscacert "$work/certs/daemon/ca.pem" \
    --tlscert "$work/certs/daemon/cert.pem" --tlskey "$work/certs/daemon/key.pem" 2>>"$work/buildd.log" &
  daemon=$!
  for _ in $(seq 200); do ours debug info >/dev/null 2>&1 && return 0; sleep 0.05; done
  echo "buildd did not start (see $work/buildd.log)" >&2; exit 1
}
# Emulators: with QEMU registered in binfmt_misc the reference BuildKit probes every emulator at
# each build (about 0.3 s here: a cached build took 0.39 s against 0.09 s with binfmt_misc off),
# buildd once at start. So that scenarios 1-6 measure what they measured before emulators
# existed on the machine, binfmt_misc is off for them and on for scenario 7 only; its state is
# restored at the end. BINFMT=keep leaves it as it is.
binfmt=/proc/sys/fs/binfmt_misc/status
binfmt_was=$(cat "$binfmt" 2>/dev/null || true)
binfmt_for() { # $1 scenario number
  [ "${BINFMT:-}" != keep ] && [ -w "$binfmt" ] || return 0
  if [ "$1" = 7 ]; then echo 1 > "$binfmt"; else echo 0 > "$binfmt"; fi
}
restore_binfmt() { [ -n "$binfmt_was" ] && [ -w "$binfmt" ] && { [ "$binfmt_was" = enabled ] && echo 1 > "$binfmt" || echo 0 > "$binfmt"; } || true; }
# KEEP=1 leaves the work dir (buildd.log, commands.log) for a look afterwards
trap 'stop_daemon; restore_binfmt; [ -n "${KEEP:-}" ] && echo "kept $work" >&2 || rm -rf "$work"' EXIT
ours() { node bin/buildctl.js --addr "tcp://127.0.0.1:$port" --tlsdir "$work/certs/client" "$@"; }
ref() { DOCKER_BUILDKIT=1 /usr/bin/docker "$@"; }
ref_cold() { ref builder prune -af >/dev/null 2>&1 || true; ref image rm -f localhost:5000/busybox:latest bench/multi bench/ctx bench/mp:amd64 bench/mp:arm64 >/dev/null 2>&1 || true; }
seconds() { local t0 t1; t0=$(date +%s.%N); "$@" >>"$work/commands.log" 2>&1 || { echo FAIL; return; }; t1=$(date +%s.%N); python3 -c "print(f'{$t1-$t0:.2f}')"; }

# the multi-stage build: each stage makes 4,000 small files and 48 MiB of random data
multi=$work/multi; mkdir -p "$multi"
{
  echo 'FROM localhost:5000/busybox:latest AS base'
  for s in 1 2 3; do
    echo "FROM base AS s$s"
    echo "RUN mkdir -p /out$s && cd /out$s && i=0 && while [ \$i -lt 4000 ]; do echo \"$s \$i\" > f\$i; i=\$((i+1)); done && head -c 50331648 /dev/urandom > big"
  done
  echo 'FROM base'
  for s in 1 2 3; do echo "COPY --from=s$s /out$s /out$s"; done
} > "$multi/Dockerfile"
# the big context: 200 directories of 100 files of 4 KiB (random, so nothing compresses away)
ctx=$work/ctx; mkdir -p "$ctx"
python3 - "$ctx" <<'EOF'
import os, sys
root = sys.argv[1]
for d in range(200):
    os.makedirs(f'{root}/d{d:03}', exist_ok=True)
    for f in range(100):
        with open(f'{root}/d{d:03}/f{f:03}', 'wb') as fh: fh.write(os.urandom(4096))
with open(f'{root}/Dockerfile', 'w') as fh:
    fh.write('FROM localhost:5000/busybox:latest\nCOPY . /src\nRUN find /src -type f | wc -l > /count\n')
EOF
touch_one() { head -c 4096 /dev/urandom > "$ctx/d100/f050"; }
# the two-platform build: a stage on the build platform makes 2,000 files for the target's arch
# (as a cross-compiler would), the target stage copies them and runs a step on the target
bash scripts/multiarch-busybox.sh 127.0.0.1:5000 >/dev/null
mp=$work/multi-platform; mkdir -p "$mp"
cat > "$mp/Dockerfile" <<'EOF2'
FROM --platform=$BUILDPLATFORM localhost:5000/busybox:multi AS build
ARG TARGETARCH
RUN mkdir /out && i=0 && while [ $i -lt 2000 ]; do echo "$TARGETARCH $i" > /out/f$i; i=$((i+1)); done
FROM localhost:5000/busybox:multi
COPY --from=build /out /out
RUN ls /out | wc -l > /count && uname -m > /arch && sha256sum /out/f1 > /sum
EOF2

declare -A R O
# `docker build --network=none` is the frontend option force-network-mode=none: both builders run
# their RUN steps without a network
ourlocal=(--frontend dockerfile.v0 --opt force-network-mode=none)
run_scenario() { # $1 scenario number; sets R[$1,$round] and O[$1,$round]
  local n=$1 round=$2
  case $n in
    1) ref_cold; R[$n,$round]=$(seconds ref build -q --network=none -t bench/multi "$multi")
       start_daemon fresh; O[$n,$round]=$(seconds ours build "${ourlocal[@]}" --local "context=$multi" --local "dockerfile=$multi" --output type=image,name=bench/multi) ;;
    2) R[$n,$round]=$(seconds ref build -q --network=none -t bench/multi "$multi")
       O[$n,$round]=$(seconds ours build "${ourlocal[@]}" --local "context=$multi" --local "dockerfile=$multi" --output type=image,name=bench/multi) ;;
    3) R[$n,$round]=$(seconds bash -c "DOCKER_BUILDKIT=1 /usr/bin/docker build -q --network=none -t localhost:5000/bench/multi:ref '$multi' && /usr/bin/docker push -q localhost:5000/bench/multi:ref")
       O[$n,$round]=$(seconds ours build "${ourlocal[@]}" --local "context=$multi" --local "dockerfile=$multi" --output "type=image,name=localhost:5000/bench/multi:ours,push=true,registry.insecure=true") ;;
    4) ref_cold; R[$n,$round]=$(seconds ref build -q --network=none -t bench/ctx "$ctx")
       start_daemon fresh; O[$n,$round]=$(seconds ours build "${ourlocal[@]}" --local "context=$ctx" --local "dockerfile=$ctx" --output type=image,name=bench/ctx) ;;
    5) R[$n,$round]=$(seconds ref build -q --network=none -t bench/ctx "$ctx")
       O[$n,$round]=$(seconds ours build "${ourlocal[@]}" --local "context=$ctx" --local "dockerfile=$ctx" --output type=image,name=bench/ctx) ;;
    6) touch_one; R[$n,$round]=$(seconds ref build -q --network=none -t bench/ctx "$ctx")
       touch_one; O[$n,$round]=$(seconds ours build "${ourlocal[@]}" --local "context=$ctx" --local "dockerfile=$ctx" --output type=image,name=bench/ctx) ;;
    7) ref_cold; R[$n,$round]=$(seconds bash -c "DOCKER_BUILDKIT=1 /usr/bin/docker build -q --network=none --platform linux/amd64 -t bench/mp:amd64 '$mp' && DOCKER_BUILDKIT=1 /usr/bin/docker build -q --network=none --platform linux/arm64 -t bench/mp:arm64 '$mp'")
       start_daemon fresh; O[$n,$round]=$(seconds ours build "${ourlocal[@]}" --opt platform=linux/amd64,linux/arm64 --local "context=$mp" --local "dockerfile=$mp" --output type=image,name=bench/mp) ;;
  esac
}

for round in $(seq "$ROUNDS"); do
  # scenarios 2-3 need 1 before them, 5-6 need 4: each round runs them in order
  for n in $SCENARIOS; do binfmt_for "$n"; run_scenario "$n" "$round"; done
done
stop_daemon

label() {
  case $1 in
    1) echo 'cold: 3 stages (4,000 files + 48 MiB each), final copies all' ;;
    2) echo 'the same, fully cached' ;;
    3) echo 'the same, cached, pushed to a registry on loopback' ;;
    4) echo 'cold: 20,000-file 80 MB context, COPY . . + RUN' ;;
    5) echo 'the same context rebuilt unchanged' ;;
    6) echo 'the same after changing one 4 KiB file' ;;
    7) echo 'cold: small two-platform build (amd64 + arm64 under QEMU)' ;;
  esac
}
median() { python3 -c 'import sys,statistics; v=[float(x) for x in sys.argv[1:] if x!="FAIL"]; print(f"{statistics.median(v):.2f}" if v else "FAIL")' "$@"; }
echo "$(date -u +%F) $(nproc) cores, $(uname -r), medians of $ROUNDS (seconds)"
echo '| scenario | BuildKit | buildd | ratio |'
echo '| --- | --- | --- | --- |'
for n in $SCENARIOS; do
  rs=(); os=()
  for round in $(seq "$ROUNDS"); do rs+=("${R[$n,$round]}"); os+=("${O[$n,$round]}"); done
  r=$(median "${rs[@]}"); o=$(median "${os[@]}")
  ratio=$(python3 -c "import sys; r,o=sys.argv[1:]; print('-' if 'FAIL' in (r,o) else f'{float(o)/max(float(r),0.01):.2f}')" "$r" "$o")
  echo "| $(label "$n") | $r | $o | $ratio |"
done
echo "buildd peak RSS over the run: $((peak_kib / 1024)) MiB"
# every round's figures, for the spread the medians hide
for n in $SCENARIOS; do
  line="scenario $n rounds (BuildKit / buildd):"
  for round in $(seq "$ROUNDS"); do line+=" ${R[$n,$round]}/${O[$n,$round]}"; done
  echo "$line"
done
