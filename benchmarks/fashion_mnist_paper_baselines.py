"""The Fashion-MNIST paper's raw-pixel baselines, re-run with scikit-learn beside our own evaluators.

Anchor: Xiao, Rasul, Vollgraf 2017, "Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning
Algorithms", arXiv 1708.07747v1, Table 3 (the PDF committed as ``doc/arxiv.pdf`` in
zalandoresearch/fashion-mnist at commit a9a50793, 2017-08-26). Its protocol is ``benchmark/runner.py`` of
the same repository (commit 5e60fd29): ``StandardScaler`` fitted on all 60,000 training images, the
classifier fitted on them (shuffled), accuracy on the official 10,000 test images, averaged over repeats;
parameters from ``benchmark/baselines.json``. The rows re-run here:

| classifier (Table 3) | parameters | Fashion test accuracy |
| --- | --- | --- |
| KNeighborsClassifier | weights=distance n_neighbors=5 p=1 | 0.854 (the best k-NN row) |
| KNeighborsClassifier | weights=distance n_neighbors=5 p=2 | 0.852 |
| LogisticRegression | C=1 multi_class=ovr penalty=l2 | 0.841 |

scikit-learn of 2017 fitted ``LogisticRegression(C=1)`` with liblinear, one-vs-rest, ``max_iter=100``; here
it is ``OneVsRestClassifier(LogisticRegression(C=1, solver="liblinear"))``, which is that. The images are the
official 28 × 28 bytes as 784 features (``zoo.datasets.idx``), not our 32-px RGB. k-NN and liblinear do not
depend on the order of the training rows, so one repeat stands for the paper's five.

    .venv/bin/python benchmarks/fashion_mnist_paper_baselines.py [--root DIR] [--skip-p1] \\
        --out results/fashion-mnist/paper-baselines.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoo.datasets import idx  # noqa: E402
from zoo.io import atomic_write_text  # noqa: E402

PAPER = {  # arXiv 1708.07747v1 Table 3, "Fashion" column
    "knn_k5_p1_distance": 0.854,
    "knn_k5_p2_distance": 0.852,
    "logreg_C1_ovr_l2": 0.841,
}


def official(root: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The 60,000 train and 10,000 test images as ``N × 784`` float64 and their labels (no split of ours)."""
    folder = idx.find_idx_root("fashion-mnist", root)
    x, y = idx.official_arrays(folder, "train")
    xt, yt = idx.official_arrays(folder, "t10k")
    return x.reshape(len(x), -1).astype(np.float64), y, xt.reshape(len(xt), -1).astype(np.float64), yt


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=None, help="IDX folder (default: Debian's /usr/share/datasets/fashion-mnist)")
    p.add_argument("--skip-p1", action="store_true", help="skip the Manhattan k-NN (the slowest row)")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = p.parse_args()
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import StandardScaler

    x, y, xt, yt = official(args.root)
    scaler = StandardScaler().fit(x)  # as the paper's runner: fitted on the whole training set
    x, xt = scaler.transform(x), scaler.transform(xt)
    rows = {
        "knn_k5_p2_distance": KNeighborsClassifier(n_neighbors=5, weights="distance", p=2),
        "logreg_C1_ovr_l2": OneVsRestClassifier(LogisticRegression(C=1.0, solver="liblinear")),
    }
    if not args.skip_p1:
        rows["knn_k5_p1_distance"] = KNeighborsClassifier(n_neighbors=5, weights="distance", p=1)
    results = {}
    for name, clf in rows.items():
        t0 = time.perf_counter()
        acc = float(clf.fit(x, y).score(xt, yt))
        results[name] = {"test_accuracy": acc, "paper": PAPER[name], "seconds": time.perf_counter() - t0}
        print(f"{name:<22} ours {acc:.4f}  paper {PAPER[name]:.3f}  ({results[name]['seconds']:.0f} s)", flush=True)
    if args.out:
        import sklearn

        doc = {
            "source": "arXiv 1708.07747v1 Table 3 (zalandoresearch/fashion-mnist@a9a50793 doc/arxiv.pdf)",
            "protocol": "StandardScaler on 60,000 train; fit on 60,000; accuracy on the official 10,000 test",
            "sklearn": sklearn.__version__,
            "command": " ".join(sys.argv),
            "results": results,
        }
        atomic_write_text(args.out, json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
