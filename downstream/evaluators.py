"""Explicit imports of the built-in evaluators: importing this module registers them.

Each import is guarded only against a missing optional dependency of that evaluator (detectron2), so the
others stay usable where it is not installed.
"""

import downstream.analysis.evaluators  # noqa: E402,F401  geometry, layerwise, invariance (issue #7)
import downstream.knn_evaluator  # noqa: E402,F401  knn: weighted kNN + retrieval
import downstream.linear_evaluator  # noqa: E402,F401  linear: fast (L-BFGS) / standard (SGD) / low-shot

try:  # detection needs detectron2 (tools/install_detectron2.py); the rest of the package works without it
    import detectron2  # noqa: F401
except ImportError:
    pass
else:
    import downstream.detection.evaluator  # noqa: F401  detection: detectron2 Faster R-CNN transfer (issue #5)
