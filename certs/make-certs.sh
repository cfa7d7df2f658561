#!/usr/bin/env bash
# Makes a CA, a daemon (server) certificate and client certificates for buildd's mutual TLS.
#
#   make-certs.sh OUTDIR [--san DNS:name|IP:addr ...] [--client NAME ...]
#
# Layout (what `buildd --tlscacert/--tlscert/--tlskey` and `buildctl --tlsdir` read):
#   OUTDIR/ca.pem OUTDIR/ca-key.pem
#   OUTDIR/daemon/{ca.pem,cert.pem,key.pem}
#   OUTDIR/client/{ca.pem,cert.pem,key.pem}          (no --client given)
#   OUTDIR/client/NAME/{ca.pem,cert.pem,key.pem}     (one per --client NAME)
# An existing CA in OUTDIR is reused, so more clients can be added later.
set -euo pipefail

usage() { echo "usage: $0 OUTDIR [--san DNS:name|IP:addr ...] [--client NAME ...]" >&2; exit 2; }

[ $# -ge 1 ] || usage
out=$1; shift
sans=()
clients=()
while [ $# -gt 0 ]; do
  case "$1" in
    --san) [ $# -ge 2 ] || usage; sans+=("$2"); shift 2 ;;
    --client) [ $# -ge 2 ] || usage; clients+=("$2"); shift 2 ;;
    -h|--help) usage ;;
    *) echo "Cannot parse arguments: unknown argument $1" >&2; usage ;;
  esac
done
for s in "${sans[@]+"${sans[@]}"}"; do
  [[ "$s" =~ ^(DNS|IP):[A-Za-z0-9.:*-]+$ ]] || { echo "Cannot use SAN $s: expected DNS:name or IP:addr" >&2; exit 2; }
done
for c in "${clients[@]+"${clients[@]}"}"; do
  [[ "$c" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || { echo "Cannot use client name $c: letters, digits, . _ - only" >&2; exit 2; }
done
[ ${#sans[@]} -gt 0 ] || sans=("DNS:localhost" "IP:127.0.0.1")

# Private keys must never be readable by others, from the moment they exist.
umask 077
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
days=825

if [ ! -f "$out/ca.pem" ] || [ ! -f "$out/ca-key.pem" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 -days 3650 \
    -subj "/CN=buildd CA" -keyout "$out/ca-key.pem" -out "$out/ca.pem" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi

# sign DIR CN EXTFILE: a key and a certificate signed by the CA, with the CA copied beside them.
sign() {
  local dir=$1 cn=$2 ext=$3
  mkdir -p "$dir"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 \
    -subj "/CN=$cn" -keyout "$dir/key.pem" -out "$tmp/req.csr" 2>/dev/null
  openssl x509 -req -in "$tmp/req.csr" -CA "$out/ca.pem" -CAkey "$out/ca-key.pem" -CAcreateserial \
    -CAserial "$tmp/ca.srl" -days "$days" -sha256 -extfile "$ext" -out "$dir/cert.pem" 2>/dev/null
  cp "$out/ca.pem" "$dir/ca.pem"
  chmod 0600 "$dir/key.pem"
  chmod 0644 "$dir/cert.pem" "$dir/ca.pem"
}

san_list=$(IFS=,; echo "${sans[*]}")
cat > "$tmp/daemon.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$san_list
EXT
sign "$out/daemon" "buildd" "$tmp/daemon.ext"

cat > "$tmp/client.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth
EXT
if [ ${#clients[@]} -eq 0 ]; then
  sign "$out/client" "client" "$tmp/client.ext"
else
  for c in "${clients[@]}"; do sign "$out/client/$c" "$c" "$tmp/client.ext"; done
fi
chmod 0600 "$out/ca-key.pem"
chmod 0644 "$out/ca.pem"
echo "certificates written to $out (daemon SANs: $san_list)" >&2
