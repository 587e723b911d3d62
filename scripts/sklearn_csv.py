#!/usr/bin/env python3
"""Writes scikit-learn's bundled real datasets as CSV files `kasmina demo --data` reads
(numeric features, last column the class index, one header line).

usage: python3 scripts/sklearn_csv.py OUT_DIR      (needs `pip install scikit-learn`)

The data ship inside the scikit-learn wheel (no download): iris (Fisher 1936; 150 rows, 4
features, 3 classes), wine (UCI wine recognition; 178 rows, 13 features, 3 classes) and breast
cancer Wisconsin diagnostic (UCI; 569 rows, 30 features, 2 classes).
"""
import sys
from pathlib import Path

from sklearn import datasets


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    out.mkdir(parents=True, exist_ok=True)
    for name, load in [("iris", datasets.load_iris), ("wine", datasets.load_wine),
                       ("breast_cancer", datasets.load_breast_cancer)]:
        d = load()
        header = ",".join([f"f{i}" for i in range(d.data.shape[1])] + ["label"])
        rows = [",".join([repr(float(v)) for v in x] + [str(int(y))]) for x, y in zip(d.data, d.target)]
        (out / f"{name}.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
        print(f"{out / (name + '.csv')}: {d.data.shape[0]} rows, {d.data.shape[1]} features, {len(set(d.target))} classes")


if __name__ == "__main__":
    main()
