#!/usr/bin/env bash
# Installs the Debian packages buildd and its tests use, when a command is missing.
# Needs root (CI and the dev machines run as root).
set -euo pipefail
need=()
want() { command -v "$1" >/dev/null 2>&1 || need+=("$2"); }
want runc runc
want skopeo skopeo
want docker-registry docker-registry
want busybox busybox-static
want openssl openssl
want newuidmap uidmap
want rootlesskit rootlesskit
want slirp4netns slirp4netns  # rootless buildd's way out for RUN steps
want curl curl
want python3 python3
want make make            # npm ci builds better-sqlite3 (the metadata database) from source
want g++ g++
want git git
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need+=(openssh-server) # the test sshd of git-ssh-credentials.test.ts
want bzip2 bzip2
want xz xz-utils
want zstd zstd             # compression=zstd layers (buildd runs the zstd program)
want iptables iptables
want ip iproute2
want chattr e2fsprogs      # runc-executor.test.ts makes a stub unremovable with chattr +a
want setpriv util-linux    # setpriv, unshare, nsenter: tests drop capabilities, make namespaces
want ssh-agent openssh-client
want faketime faketime     # build-reproducible.test.ts runs a daemon days ahead (libfaketime)
want systemd-analyze systemd # deploy-systemd.test.ts verifies the units
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
# The conformance harness's reference world (test/conformance/harness; docker-registry,
# busybox-static and skopeo are above): Debian's dockerd and its own client, checked by path
# since another docker may come first on PATH; debootstrap makes the Debian base image.
[ -x /usr/sbin/dockerd ] && [ -x /usr/bin/docker ] || need+=(docker.io)
want debootstrap debootstrap
want qemu-aarch64-static qemu-user-static  # RUN steps of a foreign platform (registered below)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Rootless buildd opens /dev/net/tun (slirp4netns's tap) as an unprivileged user. Most
# distributions ship it 0666; some machines (the test machines) have 0600 root, and then
# rootless RUN steps get loopback only. 0666 is safe: a tun/tap device needs CAP_NET_ADMIN in
# the owning network namespace to be made, opening the node alone gives nothing.
if [ -c /dev/net/tun ] && [ "$(stat -c %a /dev/net/tun)" = 600 ]; then
  chmod 0666 /dev/net/tun
fi
# QEMU user emulation registered with binfmt_misc (qemu-user-static's postinst does not do it in
# a container): linux/arm64 RUN steps and the multi-platform tests. Only warns where the machine
# does not allow it.
bash "$(dirname "$0")/register-emulators.sh"
