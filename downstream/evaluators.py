"""Explicit imports of the built-in evaluators: importing this module registers them.

Each import is guarded only against a missing optional dependency of that evaluator (detectron2), so the
others stay usable where it is not installed.
"""

import downstream.analysis.evaluators  # noqa: E402,F401  geometry, layerwise, invariance (issue #7)
import downstream.knn_evaluator  # noqa: E402,F401  knn: weighted kNN + retrieval
import downstream.linear_evaluator  # noqa: E402,F401  linear: fast (L-BFGS) / standard (SGD) / low-shot
