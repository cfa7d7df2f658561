#!/usr/bin/env python3
"""Compares the image history (created_by, empty_layer) of each case run.sh left in OUT.

run.sh's imgdiff.py compares files and config but not history, which BuildKit writes too
(`docker history` shows it). Usage: history-diff.py OUT_DIR CASE...; prints one line per
difference and exits 1 if any.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'shared', 'conformance'))
import imgdiff  # noqa: E402  (the shared loader of docker and OCI archives)


def history(path):
    config, _ = imgdiff.load_image(path)
    return [(h.get('created_by', ''), bool(h.get('empty_layer', False))) for h in config.get('history') or []]


def main(out, cases):
    problems = 0
    for case in cases:
        ref = history(os.path.join(out, case, 'reference.tar'))
        cand = history(os.path.join(out, case, 'candidate.tar'))
        for i in range(max(len(ref), len(cand))):
            r = ref[i] if i < len(ref) else None
            c = cand[i] if i < len(cand) else None
            if r != c:
                print(f'{case}: history[{i}] reference={r!r} candidate={c!r}')
                problems += 1
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1], sys.argv[2:]))
