"""The "flat background" probes of 2026-11-28: BYOL with ``background_swap_p`` drawing from flat colours.

``augment.view{1,2}.background_swap_p`` recomposes a view as ``|background − digit|`` with a background from a
bank of photo crops. Here the bank is replaced by 4,096 flat random colours, so a swapped view is a clean
coloured digit: the digit is easy to see and nothing of the original background is left. Usage (the
trainer's usual dotted overrides follow the output directory)::

    python results/pretrain-probes/flat_background_probe.py OUT_DIR run.epochs=10 \\
        augment.view2.background_swap_p=1.0
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import zoo.datasets as zd  # noqa: E402
from pretrain.config import load_pretrain_config  # noqa: E402
from pretrain.train import train  # noqa: E402


def main() -> None:
    out, overrides = sys.argv[1], sys.argv[2:]
    photo_layers = zd.digit_m_layers

    def flat_layers(split: str, image_size: int = 32, **kw: object) -> tuple[np.ndarray, np.ndarray]:
        glyphs, bank = photo_layers(split, image_size, **kw)
        colours = np.random.default_rng(1).integers(0, 256, size=(len(bank), 1, 1, 3), dtype=np.uint8)
        return glyphs, np.broadcast_to(colours, bank.shape).copy()

    zd.digit_m_layers = flat_layers  # the trainer imports it from zoo.datasets when it loads the data
    cfg = load_pretrain_config(REPO / "pretrain" / "configs" / "byol.yaml", [*overrides, "run.progress=false"])
    train(cfg, out, resume=False)


if __name__ == "__main__":
    main()
