#!/usr/bin/env bash
# Prints the buildd address that builds of KEY (a repository, say) go to, out of ADDRESSES:
# rendezvous hashing (highest random weight), a consistent hash: each address scores
# sha256(address + "\n" + key) and the highest wins, so a key stays on its replica while the
# list is unchanged, and adding or removing one replica moves only the keys that scored
# highest on it (about 1/N of them). Every CI agent running this gets the same answer.
#
#   addr=$(scripts/pick-replica.sh "$GIT_URL" tcp://buildd-0.buildd:1234 tcp://buildd-1.buildd:1234 tcp://buildd-2.buildd:1234)
#   buildctl --addr "$addr" build ... --import-cache type=registry,ref=registry.example.com/cache/app
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 KEY ADDRESS [ADDRESS...]" >&2
  exit 2
fi
key=$1
shift
best=""
best_score=""
for addr in "$@"; do
  score=$(printf '%s\n%s' "$addr" "$key" | sha256sum | cut -d' ' -f1)
  if [ -z "$best_score" ] || [[ "$score" > "$best_score" ]]; then
    best=$addr
    best_score=$score
  fi
done
printf '%s\n' "$best"
