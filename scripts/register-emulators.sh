#!/usr/bin/env bash
# QEMU user emulation for RUN steps of a foreign platform (--opt platform=linux/arm64, ...):
# installs Debian's qemu-user-static and registers its binfmt_misc entries with the kernel, so
# that an arm64 binary runs on this amd64 machine as if it were native. Called by
# scripts/install-system-deps.sh; can be run alone. Needs root.
#
# qemu-user-static's postinst registers nothing inside a container (and needs binfmt-support or
# systemd-binfmt to), so this script writes each /usr/lib/binfmt.d/qemu-*.conf line to
# /proc/sys/fs/binfmt_misc/register itself, skipping names the kernel already has and never
# registering the host's own architecture. Debian's entries carry the F (fix-binary) flag: the
# kernel opens the interpreter at registration, so it is found inside any container's rootfs.
#
# Where the machine does not allow it (no binfmt_misc, a read-only /proc/sys, no privilege), it
# prints a WARNING naming what failed and exits 0: foreign-platform RUN steps then fail with
# `exec format error`, everything else works. A second run changes nothing.
set -euo pipefail
binfmt=/proc/sys/fs/binfmt_misc
warn() { echo "WARNING: register-emulators: $*" >&2; }

if ! command -v qemu-aarch64-static >/dev/null 2>&1; then
  echo "installing: qemu-user-static" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends qemu-user-static >/dev/null
fi

if [ ! -e "$binfmt/register" ]; then
  if ! out=$(mount -t binfmt_misc binfmt_misc "$binfmt" 2>&1) || [ ! -e "$binfmt/register" ]; then
    out=$(tr -s '\n ' '  ' <<<"$out"); out=${out% }
    warn "cannot mount binfmt_misc at $binfmt (${out:-no register file after mounting}): no emulators registered, RUN steps of a foreign platform will fail with 'exec format error'"
    exit 0
  fi
fi
if [ "$(cat "$binfmt/status" 2>/dev/null)" != enabled ]; then
  warn "binfmt_misc is disabled on this machine ($binfmt/status is not 'enabled'): the emulators will not be used"
fi

# Architectures this machine runs natively (qemu's names): never emulated.
case $(uname -m) in
  x86_64) native="x86_64 i386 i486" ;;
  i?86) native="i386 i486" ;;
  aarch64) native="aarch64" ;;
  armv7l|armv6l) native="arm" ;;
  *) native=$(uname -m) ;;
esac

registered=() failed=()
for conf in /usr/lib/binfmt.d/qemu-*.conf; do
  [ -e "$conf" ] || continue
  while IFS= read -r line || [ -n "$line" ]; do
    case $line in ''|'#'*|';'*) continue ;; esac
    name=$(cut -d: -f2 <<<"$line")          # :NAME:TYPE:OFFSET:MAGIC:MASK:INTERPRETER:FLAGS
    interpreter=$(cut -d: -f7 <<<"$line")
    [ -n "$name" ] || continue
    [ -e "$binfmt/$name" ] && continue      # already registered (by us or by the host)
    if [[ " $native " == *" ${name#qemu-} "* ]]; then continue; fi
    if [ ! -e "$interpreter" ]; then
      warn "$conf: its interpreter $interpreter does not exist, $name not registered"; failed+=("$name"); continue
    fi
    if out=$( { printf '%s' "$line" > "$binfmt/register"; } 2>&1); then
      registered+=("$name")
    elif [ ! -e "$binfmt/$name" ]; then      # (a concurrent run may have registered it meanwhile)
      failed+=("$name"); err=${out##*: }
    fi
  done <"$conf"
done
[ ${#registered[@]} -eq 0 ] || echo "registered with binfmt_misc: ${registered[*]}" >&2
if [ ${#failed[@]} -gt 0 ]; then
  warn "cannot register ${failed[*]} with binfmt_misc (writing to $binfmt/register: ${err:-see above}): RUN steps of those platforms will fail with 'exec format error'"
fi

# What foreign-platform builds need most: arm64, fix-binary (F) so containers need no qemu inside.
entry=$binfmt/qemu-aarch64
if [ ! -e "$entry" ]; then
  warn "no qemu-aarch64 entry in $binfmt: linux/arm64 RUN steps cannot run on this machine"
else
  [ "$(head -1 "$entry")" = enabled ] || warn "$entry is disabled: linux/arm64 RUN steps cannot run on this machine"
  flags=$(sed -n 's/^flags: *//p' "$entry")
  case $flags in
    *F*) ;;
    *) warn "$entry has flags '$flags', without F (fix-binary): the interpreter $(sed -n 's/^interpreter //p' "$entry") must exist inside each build's rootfs, so linux/arm64 RUN steps fail with 'exec format error' or 'no such file'. Remove it (echo -1 > $entry) and run this script again." ;;
  esac
fi
exit 0
