#!/usr/bin/env python3
"""Runs two builds of one criterion bench binary interleaved on one core and prints their medians
round by round: the way to compare a change on a machine whose speed drifts between runs.

usage: python3 scripts/bench_ab.py OLD_BIN NEW_BIN FILTER [--rounds 3] [--core 1] [--seconds 4]

OLD_BIN and NEW_BIN are the bench executables cargo prints (`cargo bench --no-run -p
kasmina-benches --bench security` at each commit, then copy the `target/release/deps/security-*`
it names aside before building the other). FILTER is criterion's regex on bench ids. Each round
runs OLD then NEW (in alternating order from round to round), each into its own CRITERION_HOME, and
reads the medians from criterion's `estimates.json`. Prints one line per bench: the medians of
every round for each binary, in ns.

Example (D28):
  python3 scripts/bench_ab.py /tmp/security-old /tmp/security-new \\
      'cpu/security/(verify_envelope_view_accept|verify_bad_signature|part/)'
"""
import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def run(binary: str, filt: str, core: int, seconds: float, home: Path) -> dict:
    env = dict(os.environ, CRITERION_HOME=str(home))
    cmd = ["taskset", "-c", str(core), binary, "--bench", filt, "--warm-up-time", "1",
           "--measurement-time", str(seconds), "--noplot"]
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    medians = {}
    for est in home.glob("**/new/estimates.json"):
        name = str(est.parent.parent.relative_to(home))
        medians[name] = json.loads(est.read_text())["median"]["point_estimate"]
    return medians


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("filter")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--core", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=4.0)
    args = ap.parse_args()
    results = collections.defaultdict(lambda: {"old": [], "new": []})
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = ["old", "new"] if r % 2 == 0 else ["new", "old"]
            for which in order:
                home = Path(tmp) / f"{which}{r}"
                for name, median in run(getattr(args, which), args.filter, args.core, args.seconds, home).items():
                    results[name][which].append(median)
            print(f"round {r + 1} of {args.rounds} done", file=sys.stderr)
    if not results:
        print("no bench matched the filter", file=sys.stderr)
        return 1
    width = max(len(n) for n in results)
    for name in sorted(results):
        old, new = (" / ".join(f"{x:.0f}" for x in results[name][k]) for k in ("old", "new"))
        print(f"{name:{width}s}  old {old:>22s}   new {new:>22s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
