"""What an evaluator receives besides its own config: ``EvalContext``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.datasets import ClassificationSplit, DatasetOptions, DetectionSplit, load_dataset

__all__ = ["EvalContext"]


@dataclass
class EvalContext:
    """A loaded artifact (frozen backbone in eval mode), the dataset to evaluate on, and shared services.

    ``artifact`` has ``.model`` (``nn.Module`` or a pseudo-backbone such as raw pixels), ``.meta``
    (``zoo.artifact.ArtifactMeta``), ``.sha256`` and ``.path``. ``work_dir`` is the evaluator's own scratch
    / output folder; ``cache_dir`` holds shared caches (features). ``selection`` is where an evaluator notes
    what it chose on a held-out split (never test), for the metric record. ``keep(name, path)`` names a
    file (predictions) to keep beside the record, so that its numbers can be re-checked.
    """

    artifact: Any
    dataset: str
    dataset_options: DatasetOptions
    seed: int
    device: torch.device
    work_dir: Path
    cache_dir: Path
    # what the evaluator chose and on which split (e.g. {"split": "val", "l2": 1e-3}); goes into the record
    selection: dict[str, Any] = field(default_factory=dict)
    _splits: dict[str, Any] = field(default_factory=dict, repr=False)
    # files to keep beside the record (downstream.evidence), by name
    _evidence: dict[str, Any] = field(default_factory=dict, repr=False)

    def keep(self, name: str, path: str | Path, *, copy: bool = True, **origin: Any) -> None:
        """Keep ``path`` (e.g. predictions) beside the metric record as ``name``, with its sha256 and ``origin``.

        The work folder may be temporary: ``downstream.api.evaluate`` copies the file before deleting it.
        ``copy=False`` records only its hash and origin (for files too large to copy beside every record).
        """
        from downstream.evidence import KeptFile

        if name in self._evidence:
            raise ValueError(f"evidence '{name}' is kept twice")
        self._evidence[name] = KeptFile(Path(path), dict(origin), copy)

    def load_split(self, split: str) -> ClassificationSplit | DetectionSplit:
        """The dataset split, loaded once per context (at the artifact's input size unless overridden)."""
        if split not in self._splits:
            opts = self.dataset_options
            if opts.image_size is None and getattr(self.artifact.meta, "input_size", None):
                from dataclasses import replace

                opts = replace(opts, image_size=self.artifact.meta.input_size)
            self._splits[split] = load_dataset(self.dataset, split, opts)
        return self._splits[split]

    def features(self, split: str, layer: str = "pool") -> tuple[torch.Tensor, np.ndarray]:
        """Frozen features ``N × D`` (float32, CPU) and labels of ``split``, from the shared on-disk cache."""
        from downstream.features import get_features

        return get_features(self, split, layer=layer)
