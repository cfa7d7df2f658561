#!/usr/bin/env bash
# Pushes a two-platform busybox image into a plain-HTTP registry, the base image of
# multi-platform tests and conformance cases (`FROM localhost:5000/busybox:multi`):
#
#   bash scripts/multiarch-busybox.sh REGISTRY_HOSTPORT [REPO:TAG]    (default busybox:multi)
#
# An OCI image index with linux/amd64 and linux/arm64, each image one layer laid out as
# reference.sh's busybox_rootfs lays out localhost:5000/busybox:latest (/bin/busybox, a symlink per
# applet, /etc/passwd and /etc/group, /tmp, /root, ...), config `ENV PATH=...` and `CMD ["sh"]`.
# amd64's busybox is the installed busybox-static's; arm64's comes from Debian's
# busybox-static:arm64 package, downloaded (never installed) into $BUILDD_MULTIARCH_CACHE
# (default /var/tmp/buildd-multiarch); the first run adds arm64 to dpkg's architectures.
# The layers are made reproducibly (sorted, fixed times and owners, gzip -n): the same packages
# give the same digests, and a run that finds the tag already pointing at that index pushes
# nothing. Running an arm64 RUN step on it needs scripts/register-emulators.sh. Needs root.
set -euo pipefail
[ $# -ge 1 ] && [ $# -le 2 ] || { sed -n '5p' "$0" | sed 's/^# *//' >&2; exit 2; }
registry=$1
ref=${2:-busybox:multi}
repo=${ref%:*} tag=${ref##*:}
[ "$repo" != "$ref" ] && [ -n "$repo" ] && [ -n "$tag" ] || { echo "Cannot push $ref: give it as REPO:TAG" >&2; exit 2; }
base=http://$registry
cache=${BUILDD_MULTIARCH_CACHE:-/var/tmp/buildd-multiarch}
# 2024-01-01T00:00:00Z: every file's mtime and the configs' `created`, so that digests do not
# depend on when the script ran.
epoch=1704067200
created=2024-01-01T00:00:00Z
path_env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

if [ "$(dpkg-query -W -f='${Status}' busybox-static 2>/dev/null)" != "install ok installed" ]; then
  echo "Cannot make the amd64 image: busybox-static is not installed (apt-get install busybox-static, or bash scripts/install-system-deps.sh)" >&2
  exit 1
fi
curl -fs -o /dev/null "$base/v2/" || { echo "Cannot push to $registry: no registry answers at $base/v2/" >&2; exit 1; }

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9   # one run at a time fills the cache

# busybox-static:arm64, downloaded once: the version installed for amd64 when the mirror still
# has it (the same applets), else the mirror's.
arm64_deb() {
  local debs=("$cache"/busybox-static_*_arm64.deb)
  if [ ! -e "${debs[0]}" ]; then
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
      echo "adding arm64 to dpkg's architectures (for apt-get download busybox-static:arm64)" >&2
      dpkg --add-architecture arm64
      apt-get update -qq
    fi
    local version
    version=$(dpkg-query -W -f='${Version}' busybox-static)
    (cd "$cache" && { apt-get download -q "busybox-static:arm64=$version" 2>/dev/null \
      || apt-get download -q busybox-static:arm64 2>/dev/null \
      || { apt-get update -qq && apt-get download -q busybox-static:arm64; }; } >/dev/null) \
      || { echo "Cannot download busybox-static:arm64 with apt-get" >&2; exit 1; }
    debs=("$cache"/busybox-static_*_arm64.deb)
  fi
  echo "${debs[-1]}"
}
deb=$(arm64_deb)
if [ ! -x "$cache/arm64/bin/busybox" ] || [ "$(cat "$cache/arm64/.deb" 2>/dev/null)" != "$(basename "$deb")" ]; then
  rm -rf "$cache/arm64"
  dpkg-deb -x "$deb" "$cache/arm64"
  basename "$deb" > "$cache/arm64/.deb"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# ROOT BUSYBOX APPLETS_FILE: reference.sh's busybox_rootfs with a given binary and applet list.
busybox_rootfs() {
  local root=$1 applet
  mkdir -p "$root"/{bin,etc,root,tmp,home,var/tmp,usr/bin,usr/sbin}
  cp "$2" "$root/bin/busybox"
  chmod 0755 "$root/bin/busybox"
  while read -r applet; do
    [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
  done <"$3"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' > "$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
  chmod 0755 "$root" "$root"/{bin,etc,home,var,usr,usr/bin,usr/sbin}
  chmod 0644 "$root/etc/passwd" "$root/etc/group"
  chmod 1777 "$root/tmp" "$root/var/tmp"; chmod 700 "$root/root"
}

/bin/busybox --list | sort >"$work/amd64.applets"
# arm64's own list through QEMU where it runs; Debian builds both from one configuration, so
# the amd64 list stands in where it does not.
if /usr/bin/qemu-aarch64-static "$cache/arm64/bin/busybox" --list 2>/dev/null | sort >"$work/arm64.applets" \
   && [ -s "$work/arm64.applets" ]; then :; else cp "$work/amd64.applets" "$work/arm64.applets"; fi

for arch in amd64 arm64; do
  bin=/bin/busybox; [ $arch = amd64 ] || bin=$cache/arm64/bin/busybox
  busybox_rootfs "$work/$arch" "$bin" "$work/$arch.applets"
  tar -C "$work/$arch" --sort=name --format=gnu --mtime=@$epoch --owner=0 --group=0 --numeric-owner \
    -cf "$work/$arch.tar" .
  gzip -n -9 <"$work/$arch.tar" >"$work/$arch.tar.gz"
done
version=$(dpkg-query -W -f='${Version}' busybox-static)
arm64_version=$(dpkg-deb -f "$deb" Version)

# The configs, manifests and index as blob files named by digest under $work/blobs, and the
# order to push them in (layers and configs, manifests, then the index by tag).
python3 - "$work" "$created" "$path_env" "$version" "$arm64_version" <<'EOF'
import hashlib, json, os, shutil, sys
work, created, path_env, version, arm64_version = sys.argv[1:]
os.makedirs(f"{work}/blobs", exist_ok=True)
def dump(obj):
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()
def blob(data, media_type):
    d = sha(data)
    with open(f"{work}/blobs/{d[7:]}", "wb") as f:
        f.write(data)
    return {"mediaType": media_type, "digest": d, "size": len(data)}
def file_digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest(), os.path.getsize(path)
blobs, manifests = [], []
for arch, ver in (("amd64", version), ("arm64", arm64_version)):
    gz_digest, gz_size = file_digest(f"{work}/{arch}.tar.gz")
    shutil.copyfile(f"{work}/{arch}.tar.gz", f"{work}/blobs/{gz_digest[7:]}")
    diff_id, _ = file_digest(f"{work}/{arch}.tar")
    config = {
        "architecture": arch, "os": "linux", "created": created,
        "config": {"Env": [path_env], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created, "created_by": f"busybox-static {ver} ({arch}), scripts/multiarch-busybox.sh"}],
    }
    cfg = blob(dump(config), "application/vnd.oci.image.config.v1+json")
    layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": gz_digest, "size": gz_size}
    blobs += [layer["digest"], cfg["digest"]]
    manifest = blob(dump({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                          "config": cfg, "layers": [layer]}), "application/vnd.oci.image.manifest.v1+json")
    manifests.append({**manifest, "platform": {"architecture": arch, "os": "linux"}})
index = blob(dump({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}),
             "application/vnd.oci.image.index.v1+json")
with open(f"{work}/plan", "w") as f:
    for d in blobs:
        f.write(f"blob {d}\n")
    for m in manifests:
        f.write(f"manifest {m['digest']}\n")
    f.write(f"index {index['digest']}\n")
EOF
index=$(awk '$1 == "index" {print $2}' "$work/plan")
# NAME: that header's value from the headers on stdin (NAME in lower case)
header() { awk -v name="$1" -F': ' 'tolower($1) == name {print $2}'; }

current=$(curl -fsS -o /dev/null -D - -I -H 'Accept: application/vnd.oci.image.index.v1+json' \
  "$base/v2/$repo/manifests/$tag" 2>/dev/null | tr -d '\r' | header docker-content-digest || true)
if [ "$current" = "$index" ]; then
  echo "$registry/$repo:$tag is up to date ($index: linux/amd64, linux/arm64)" >&2
  exit 0
fi

# METHOD URL EXPECTED_STATUS [CURL_ARGS...]: the response's headers on stdout; on another status,
# fails with the registry's answer.
http() {
  local method=$1 url=$2 want=$3 status
  shift 3
  status=$(curl -sS -X "$method" -D "$work/headers" -o "$work/body" -w '%{http_code}' "$@" "$url") || return 1
  if [ "$status" != "$want" ]; then
    echo "Cannot $method $url: $status $(head -c 2000 "$work/body")" >&2
    return 1
  fi
  tr -d '\r' <"$work/headers"
}
put_blob() {
  local digest=$1 location
  curl -fsS -o /dev/null -I "$base/v2/$repo/blobs/$digest" 2>/dev/null && return 0
  location=$(http POST "$base/v2/$repo/blobs/uploads/" 202 | header location)
  [ -n "$location" ] || { echo "Cannot push $digest to $registry: its upload has no Location" >&2; return 1; }
  case $location in /*) location=$base$location ;; esac
  case $location in *\?*) location="$location&digest=$digest" ;; *) location="$location?digest=$digest" ;; esac
  http PUT "$location" 201 -H 'Content-Type: application/octet-stream' --data-binary "@$work/blobs/${digest#sha256:}" >/dev/null
}
put_manifest() { # DIGEST REFERENCE MEDIA_TYPE
  http PUT "$base/v2/$repo/manifests/$2" 201 -H "Content-Type: $3" --data-binary "@$work/blobs/${1#sha256:}" >/dev/null
}
while read -r kind digest; do
  case $kind in
    blob) put_blob "$digest" ;;
    manifest) put_manifest "$digest" "$digest" application/vnd.oci.image.manifest.v1+json ;;
    index) put_manifest "$digest" "$tag" application/vnd.oci.image.index.v1+json ;;
  esac
done <"$work/plan"
echo "pushed $registry/$repo:$tag ($index: linux/amd64, linux/arm64)" >&2
