#!/usr/bin/env bash
# Prints the Secret the manifests mount at /certs (ca.pem, cert.pem, key.pem of the daemon),
# from the output directory of certs/make-certs.sh. Nothing is sent anywhere:
#   certs/make-certs.sh ./certs --san DNS:buildd --san DNS:buildd.build.svc.cluster.local
#   deploy/kubernetes/create-secret.sh ./certs [NAME] | kubectl apply -n build -f -
set -euo pipefail
dir=${1:?usage: create-secret.sh CERTS_DIR [SECRET_NAME]}
name=${2:-buildd-certs}
for f in ca.pem cert.pem key.pem; do
  [ -s "$dir/daemon/$f" ] || { echo "create-secret.sh: $dir/daemon/$f is missing (run certs/make-certs.sh $dir first)" >&2; exit 1; }
done
cat <<YAML
apiVersion: v1
kind: Secret
metadata:
  name: $name
  labels:
    app: buildd
type: Opaque
data:
  ca.pem: $(base64 -w0 "$dir/daemon/ca.pem")
  cert.pem: $(base64 -w0 "$dir/daemon/cert.pem")
  key.pem: $(base64 -w0 "$dir/daemon/key.pem")
YAML
