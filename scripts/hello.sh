#!/usr/bin/env bash
# The main job on a fresh Debian machine, as root: installs what is missing, makes dev
# certificates, starts buildd with mutual TLS on a free loopback port and its embedded OCI
# registry on another, builds examples/hello with buildctl, publishes it to that registry (and
# writes an OCI archive), pulls it back with skopeo, runs the pulled image with runc, and
# stops buildd.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
STATE=${BUILDD_STATE:-$repo/.state}
mkdir -p "$STATE"

bash scripts/install-system-deps.sh
[ -d node_modules ] || npm ci --no-audit --no-fund
npm run build >/dev/null   # always: a dist/ from before a pull would run stale code

[ -f "$STATE/certs/client/cert.pem" ] || bash certs/make-certs.sh "$STATE/certs" >/dev/null
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
addr=tcp://127.0.0.1:$(free_port)
registry=127.0.0.1:$(free_port)
node bin/buildd.js --addr "$addr" --root "$STATE/root" --registry-addr "$registry" \
  --tlscacert "$STATE/certs/daemon/ca.pem" --tlscert "$STATE/certs/daemon/cert.pem" --tlskey "$STATE/certs/daemon/key.pem" \
  >"$STATE/buildd.log" 2>&1 &
daemon=$!
trap 'kill -TERM $daemon 2>/dev/null; wait $daemon 2>/dev/null || true' EXIT
buildctl() { node bin/buildctl.js --addr "$addr" --tlsdir "$STATE/certs/client" "$@"; }
for _ in $(seq 100); do
  buildctl debug info >/dev/null 2>&1 && break
  kill -0 $daemon 2>/dev/null || { cat "$STATE/buildd.log" >&2; exit 1; }
  sleep 0.1
done

ctx=$STATE/hello-context
rm -rf "$ctx"; cp -r examples/hello "$ctx"; cp "$(command -v busybox)" "$ctx/busybox"
buildctl build --frontend dockerfile.v0 --local context="$ctx" --local dockerfile="$ctx" \
  --opt build-arg:GREETING=hello --progress plain --metadata-file "$STATE/hello.metadata.json" \
  --output type=image,name="$registry/examples/hello:latest",push=true \
  --output type=oci,dest="$STATE/hello.oci.tar",name=buildd.local/hello:latest

echo
echo "Built $registry/examples/hello:latest ($(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["containerimage.digest"])' "$STATE/hello.metadata.json")), also in $STATE/hello.oci.tar"
echo "Pulling it back from buildd's registry with skopeo into $STATE/hello.pulled.oci.tar:"
rm -f "$STATE/hello.pulled.oci.tar"
skopeo copy --quiet --src-tls-verify=false "docker://$registry/examples/hello:latest" "oci-archive:$STATE/hello.pulled.oci.tar"
echo "Running the pulled image with runc (scripts/run-oci.sh $STATE/hello.pulled.oci.tar):"
bash scripts/run-oci.sh "$STATE/hello.pulled.oci.tar"
