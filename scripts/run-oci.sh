#!/usr/bin/env bash
# Runs the image in an OCI archive with runc: skopeo (an independent client) unpacks it into
# an OCI layout, its layers are extracted in order into a rootfs, and the config's Cmd,
# Entrypoint, Env, User and WorkingDir become the runc spec. A demo runner for the example
# and the tests, not a container engine: it applies whiteouts but nothing else fancy.
set -euo pipefail
archive=$1; shift
work=$(mktemp -d)
trap 'runc --root "$work/runc" delete -f run >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
skopeo copy -q "oci-archive:$archive" "oci:$work/layout:img" >/dev/null
python3 - "$work" "$@" <<'PY'
import json, os, shutil, sys, tarfile
work = sys.argv[1]
layout = os.path.join(work, "layout")
blob = lambda d: os.path.join(layout, "blobs", *d.split(":"))
index = json.load(open(os.path.join(layout, "index.json")))
manifest = json.load(open(blob(index["manifests"][0]["digest"])))
config = json.load(open(blob(manifest["config"]["digest"])))
root = os.path.join(work, "bundle", "rootfs")
os.makedirs(root)
for layer in manifest["layers"]:
    with tarfile.open(blob(layer["digest"])) as tar:
        for m in tar.getmembers():
            name = os.path.normpath(m.name).lstrip("/")
            if name.startswith(".."):
                continue
            base, parent = os.path.basename(name), os.path.dirname(name)
            if base == ".wh..wh..opq":
                d = os.path.join(root, parent)
                for child in os.listdir(d) if os.path.isdir(d) else []:
                    p = os.path.join(d, child)
                    shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.unlink(p)
            elif base.startswith(".wh."):
                p = os.path.join(root, parent, base[4:])
                if os.path.isdir(p) and not os.path.islink(p): shutil.rmtree(p)
                elif os.path.lexists(p): os.unlink(p)
        tar.extractall(root, members=[m for m in tar.getmembers() if not os.path.basename(m.name).startswith(".wh.")], numeric_owner=True, filter="fully_trusted" if hasattr(tarfile, "data_filter") else None)
c = config.get("config", {})
args = (c.get("Entrypoint") or []) + (sys.argv[2:] or c.get("Cmd") or [])
user = c.get("User") or "0:0"
uid, _, gid = user.partition(":")
spec = {
  "ociVersion": "1.0.2",
  "process": {"terminal": False, "user": {"uid": int(uid), "gid": int(gid or 0)}, "args": args,
              "env": c.get("Env") or [], "cwd": c.get("WorkingDir") or "/",
              "capabilities": {k: ["CAP_KILL", "CAP_AUDIT_WRITE"] for k in ("bounding", "effective", "permitted")},
              "noNewPrivileges": True},
  "root": {"path": "rootfs", "readonly": True},
  "hostname": "hello",
  "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
             {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}],
  "linux": {"namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")]},
}
json.dump(spec, open(os.path.join(work, "bundle", "config.json"), "w"))
PY
runc --root "$work/runc" run --bundle "$work/bundle" run
