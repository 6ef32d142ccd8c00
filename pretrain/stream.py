"""Pretraining straight from image files (``data.stream: true``): nothing decoded is kept in memory.

DataLoader workers open each file of a step's batch, cut both views' random resized crops (+ flips) from the
full-resolution image and resize them to ``data.image_size``; the device then applies the rest of each view
(colour jitter, grayscale, blur, solarisation: ``pretrain.augment.augment_view(..., crop=False)``). Host memory
is the prefetched batches only, whatever the dataset's size.

Every random number of a crop comes from a generator seeded by ``(seed, rank, step, position)``, so the views
do not depend on the number of workers or on which worker decodes which image, and a resumed run draws what
an uninterrupted one would. The batches follow the same per-epoch permutation as the in-memory path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from pretrain.config import ViewAugment

__all__ = ["crop_box", "StreamedViews", "StepBatches"]

Key = tuple[int, int, int]  # (step, position in the rank's batch, image index)


def crop_box(
    width: int, height: int, area: float, log_ratio: float, u_x: float, u_y: float
) -> tuple[int, int, int, int]:
    """``(left, top, crop width, crop height)`` in pixels of a crop covering ``area`` of the image with aspect
    ``exp(log_ratio)`` (width / height), placed at the fractions ``u_x``, ``u_y`` of the free room.

    As torchvision's ``RandomResizedCrop`` the log-ratio is uniform; an out-of-bounds box is shrunk to fit
    instead of being redrawn (as ``pretrain.augment.random_resized_crop_flip`` does on tensors).
    """
    r = math.exp(log_ratio)
    target = area * width * height
    cw = max(1, min(width, int(round(math.sqrt(target * r)))))
    ch = max(1, min(height, int(round(math.sqrt(target / r)))))
    return int(u_x * (width - cw)), int(u_y * (height - ch)), cw, ch


def _key_seed(*parts: int) -> int:
    seed = 0
    for p in parts:
        seed = (seed * 1_000_003 + int(p)) % (2**63 - 1)
    return seed


class StreamedViews(Dataset):
    """``key -> uint8 2 × 3 × S × S``: the two views' crops of image ``key[2]``, cut from the file at full size."""

    def __init__(self, paths: Sequence[str], views: Sequence[ViewAugment], size: int, seed: int, rank: int) -> None:
        self.paths = list(paths)
        self.views = tuple(views)
        self.size = size
        self.seed = seed
        self.rank = rank

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: Key) -> torch.Tensor:
        from PIL import Image

        step, position, index = key
        gen = torch.Generator().manual_seed(_key_seed(self.seed, 104729, self.rank, step, position))
        with Image.open(self.paths[index]) as fh:
            img = fh.convert("RGB")
        w, h = img.size
        out = []
        for view in self.views:
            u = torch.rand(5, generator=gen).tolist()
            area = view.crop_scale[0] + (view.crop_scale[1] - view.crop_scale[0]) * u[0]
            lo, hi = math.log(view.crop_ratio[0]), math.log(view.crop_ratio[1])
            left, top, cw, ch = crop_box(w, h, area, lo + (hi - lo) * u[1], u[2], u[3])
            crop = img.resize((self.size, self.size), Image.BILINEAR, box=(left, top, left + cw, top + ch))
            if u[4] < view.flip_p:
                crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
            out.append(torch.from_numpy(np.asarray(crop, dtype=np.uint8).copy()).permute(2, 0, 1))
        return torch.stack(out)


class StepBatches(Sampler[list[Key]]):
    """The keys of each step's batch for one rank, steps ``start``..``total - 1`` (the in-memory path's order)."""

    def __init__(
        self,
        perm_of: Callable[[int], torch.Tensor],
        batch_size: int,
        per_rank: int,
        rank: int,
        steps_per_epoch: int,
        start: int,
        total: int,
    ) -> None:
        self.perm_of, self.batch_size, self.per_rank, self.rank = perm_of, batch_size, per_rank, rank
        self.spe, self.start, self.total = steps_per_epoch, start, total

    def __len__(self) -> int:
        return max(0, self.total - self.start)

    def __iter__(self) -> Iterator[list[Key]]:
        perm_epoch, perm = -1, torch.empty(0, dtype=torch.long)
        for step in range(self.start, self.total):
            epoch, i = divmod(step, self.spe)
            if epoch != perm_epoch:
                perm, perm_epoch = self.perm_of(epoch), epoch
            batch = perm[i * self.batch_size : (i + 1) * self.batch_size]
            idx = batch[self.rank * self.per_rank : (self.rank + 1) * self.per_rank]
            yield [(step, j, int(k)) for j, k in enumerate(idx)]
