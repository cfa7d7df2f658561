#!/usr/bin/env bash
# Builds the Dockerfile of a checkout on a remote buildd and pushes the image, as a Jenkins
# stage (see Jenkinsfile) or any CI job runs it. Everything comes from the environment:
#   BUILDD_ADDR       tcp://host:port of buildd (required)
#   BUILDD_TLS_CA, BUILDD_TLS_CERT, BUILDD_TLS_KEY   PEM files: the CA and this client's
#                     certificate and key (Jenkins file credentials; required)
#   IMAGE             the reference to push, e.g. registry.example.com/team/app:42 (required)
#   CONTEXT           the build context (default .), DOCKERFILE_DIR its Dockerfile's dir (default CONTEXT)
#   TARGET            a stage to build (optional); BUILD_ARGS "K=V K2=V2" (optional)
#   CACHE_REF         a registry reference for --export-cache/--import-cache mode=max (optional)
#   PUSH              true (default) or false: build only
#   BUILDCTL          the buildctl command (default: buildctl on PATH)
#   METADATA_FILE     where buildctl writes the result (default buildctl-metadata.json)
# Prints the pushed digest last. Exits non-zero with buildctl's error when the build fails.
set -euo pipefail
: "${BUILDD_ADDR:?set BUILDD_ADDR to tcp://host:port of buildd}"
: "${BUILDD_TLS_CA:?set BUILDD_TLS_CA to the CA file}"
: "${BUILDD_TLS_CERT:?set BUILDD_TLS_CERT to the client certificate file}"
: "${BUILDD_TLS_KEY:?set BUILDD_TLS_KEY to the client key file}"
: "${IMAGE:?set IMAGE to the image reference to push}"
context=${CONTEXT:-.}
dockerfile_dir=${DOCKERFILE_DIR:-$context}
metadata=${METADATA_FILE:-buildctl-metadata.json}
read -r -a buildctl <<< "${BUILDCTL:-buildctl}"

args=(--addr "$BUILDD_ADDR" --tlscacert "$BUILDD_TLS_CA" --tlscert "$BUILDD_TLS_CERT" --tlskey "$BUILDD_TLS_KEY"
  build --frontend dockerfile.v0 --local "context=$context" --local "dockerfile=$dockerfile_dir"
  --progress plain --metadata-file "$metadata"
  --output "type=image,name=$IMAGE,push=${PUSH:-true}")
[ -n "${TARGET:-}" ] && args+=(--opt "target=$TARGET")
for kv in ${BUILD_ARGS:-}; do args+=(--opt "build-arg:$kv"); done
if [ -n "${CACHE_REF:-}" ]; then
  args+=(--export-cache "type=registry,ref=$CACHE_REF,mode=max" --import-cache "type=registry,ref=$CACHE_REF")
fi
"${buildctl[@]}" "${args[@]}"
digest=$(sed -n 's/.*"containerimage.digest": *"\([^"]*\)".*/\1/p' "$metadata" | head -1)
echo "pushed $IMAGE@$digest"
