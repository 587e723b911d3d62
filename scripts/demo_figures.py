#!/usr/bin/env python3
"""Runs `kasmina demo` over several RNG seeds and reports the figures of the growth issue.

usage: python3 scripts/demo_figures.py [--bin target/release/kasmina] [--seeds 1-10] [demo flags ...]

For each seed: host only / grown / static final validation accuracy and loss (and bits per byte
for `--task transformer`), the helpful and the broken seed's final stage, the demo's wall time
(all three runs, `wall_seconds`), and the no-shock check: around every stage transition, the train
loss's 20-step moving average over the 50 steps after it never exceeds 1.5x its 50-step average
before it. Extra flags (e.g. `--data iris.csv`, `--adapter BP901`) go to every demo run.
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def no_shock(losses, steps_of_transitions, before=50, after=50, window=20, factor=1.5):
    """The worst ratio (moving average after / average before) over all transitions that have
    a full window on each side; returns (worst, checked)."""
    worst, checked = 0.0, 0
    for t in steps_of_transitions:
        if t < before or t + after > len(losses):
            continue
        base = statistics.fmean(losses[t - before:t])
        for i in range(t, t + after):
            lo = max(0, i - window + 1)
            ma = statistics.fmean(losses[lo:i + 1])
            worst = max(worst, ma / base if base > 0 else float("inf"))
        checked += 1
    return worst, checked


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/kasmina")
    ap.add_argument("--seeds", default="1-10")
    args, extra = ap.parse_known_args()
    lo, _, hi = args.seeds.partition("-")
    seeds = range(int(lo), int(hi or lo) + 1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            out = Path(tmp) / f"s{seed}"
            run = subprocess.run([args.bin, "demo", "--seed", str(seed), "--json", "--out", str(out), *extra],
                                 capture_output=True, text=True, check=True)
            d = json.loads(run.stdout)
            losses = [float(line.split(",")[1]) for line in (out / "train_loss.csv").read_text().splitlines()[1:]]
            steps = sorted({int(t[0]) for t in d.get("transitions", [])})
            worst, checked = no_shock(losses, steps)
            r = d["runs"]
            seeds_by = {s["seed_id"]: s for s in d["seeds"]}
            helpful = next((s for k, s in seeds_by.items() if k.startswith("seed-adapter") and s["final_stage"] == "SEED_STAGE_FOSSILIZED"),
                           next((s for k, s in seeds_by.items() if k.startswith("seed-adapter")), None))
            broken = seeds_by.get("seed-broken")
            rows.append((seed, r, helpful, broken, worst, checked, d.get("wall_seconds")))
    def fmt(run):
        if run is None:
            return "-"
        bpb = f" {run['final_val_bpb']:.3f}" if "final_val_bpb" in run else ""
        return f"{run['final_val_acc'] * 100:5.1f}% {run['final_val_loss']:.4f}{bpb}"
    col = 22 if any("final_val_bpb" in r[1]["grown"] for r in rows) else 16
    print(f"{'seed':>4}  {'host only':>{col}}  {'grown':>{col}}  {'static':>{col}}  {'adapter':<34} {'broken':<34} "
          f"no-shock   wall")
    lifts, fossilized, culled, shocks = [], 0, 0, 0
    for seed, r, helpful, broken, worst, checked, wall in rows:
        h_stage = helpful and f"{helpful['final_stage'][11:]} {helpful.get('cull_reason') or ''}".strip()
        b_stage = broken and f"{broken['final_stage'][11:]} {broken.get('cull_reason') or ''}".strip()
        if helpful and helpful["final_stage"] == "SEED_STAGE_FOSSILIZED":
            fossilized += 1
            lifts.append((r["grown"]["final_val_acc"] - r["host_only"]["final_val_acc"]) * 100)
        if broken and "SEED_STAGE_CULLED" in broken["stages"]:
            culled += 1
        shocks += worst > 1.5
        wall = "-" if wall is None else f"{wall:.1f} s"
        print(f"{seed:>4}  {fmt(r['host_only']):>{col}}  {fmt(r['grown']):>{col}}  {fmt(r.get('static')):>{col}}  "
              f"{h_stage or '-':<34} {b_stage or '-':<34} {worst:.2f} ({checked}) {wall:>8}")
    print()
    print(f"adapter fossilized in {fossilized}/{len(rows)}; broken seed culled in {culled}/{len(rows)}; "
          f"runs with a shock (ratio > 1.5): {shocks}")
    if lifts:
        print(f"lift when fossilized (grown - host only, points): mean {statistics.fmean(lifts):.1f}, "
              f"min {min(lifts):.1f}, max {max(lifts):.1f}")


if __name__ == "__main__":
    sys.exit(main())
