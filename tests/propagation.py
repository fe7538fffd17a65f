#!/usr/bin/env python3
"""Propagation delay between mounts: write a document on one, time its
arrival on others, print median and p90 per target.

    propagation.py N LEDGER_DIR_A NAME=LEDGER_DIR ...

Each sample writes A/prop.json with a fresh value and polls every target's
prop.json (every 2 ms) until it holds that value, each for up to 60 s; a
target that never gets it is a failure (exit 1). A benchmark, not a timed
assertion: the figures are printed, never compared with a limit.
"""
import json
import os
import random
import statistics
import sys
import time
import uuid


def main():
    n = int(sys.argv[1])
    src = sys.argv[2]
    targets = [a.split("=", 1) for a in sys.argv[3:]]
    delays = {name: [] for name, _ in targets}
    for i in range(n):
        value = uuid.uuid4().hex
        t0 = time.monotonic()
        with open(os.path.join(src, "prop.json"), "w") as f:
            json.dump({"sample": i, "value": value}, f)
        left = dict(targets)
        while left:
            for name, d in list(left.items()):
                try:
                    with open(os.path.join(d, "prop.json")) as f:
                        if value in f.read():
                            delays[name].append(time.monotonic() - t0)
                            del left[name]
                except OSError:
                    pass
            if time.monotonic() - t0 > 60:
                print("sample %d never reached %s" % (i, ", ".join(left)))
                return 1
            time.sleep(0.002)
        # Write at a random moment of the targets' poll cycles.
        time.sleep(random.uniform(0.05, 1.05))
    for name, v in delays.items():
        v.sort()
        p90 = v[min(len(v) - 1, int(len(v) * 0.9))]
        print("propagation %s: median %.0f ms, p90 %.0f ms, max %.0f ms "
              "over %d samples" % (name, statistics.median(v) * 1000,
                                   p90 * 1000, v[-1] * 1000, len(v)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
