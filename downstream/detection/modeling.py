"""detectron2 config for a trial: model-zoo base ← preset overrides ← converted-torchvision settings.

The settings every converted torchvision ResNet needs (as in MoCo's and VISSL's detectron2 configs):
RGB input with torchvision's mean/std scaled to 0–255, ``STRIDE_IN_1X1=False`` (torchvision puts the
stride in the 3×3 conv), BN in training mode everywhere (SyncBN with several GPUs) and ``FREEZE_AT=0``
— with frozen BN a random-init backbone diverges within 20 iterations (measured on digits-det).

Both weight routes (``weights.py``) get these settings: on the adapter route (``backbone.py``) the FPN's
bottom-up network is our own module, built by ``build_byol_bench_fpn_backbone`` with the same norm and
freezing, so the two routes train the same model for a standard ResNet.
"""

from __future__ import annotations

from typing import Any

from detectron2 import model_zoo
from detectron2.config import CfgNode, get_cfg
from detectron2.layers import get_norm
from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.roi_heads import Res5ROIHeads
from torch import nn

from downstream.detection.backbone import add_adapter_config, check_adapter_architecture, register_backbones
from downstream.detection.config import DetectionConfig, Preset
from downstream.detection.weights import BackboneWeights, check_architecture, resnet_settings
from zoo.backbones import get_spec

__all__ = ["build_d2_config", "Res5ROIHeadsExtraNorm"]


class Res5ROIHeadsExtraNorm(Res5ROIHeads):
    """C4 ROI head with a norm layer after res5, as MoCo's detection protocol uses (MoCo v1 Sec. 4.2).

    MoCo adds BN after res5 in the box head because the fine-tuned backbone uses BN everywhere; the
    extra layer is newly initialised (weight 1, bias 0) and not part of the converted checkpoint.
    """

    @classmethod
    def _build_res5_block(cls, cfg: CfgNode) -> tuple[nn.Module, int]:
        seq, out_channels = super()._build_res5_block(cfg)
        norm = get_norm(cfg.MODEL.RESNETS.NORM, out_channels)
        return nn.Sequential(*seq, norm), out_channels


if "Res5ROIHeadsExtraNorm" not in ROI_HEADS_REGISTRY:
    ROI_HEADS_REGISTRY.register(Res5ROIHeadsExtraNorm)


def _scaled_steps(steps: tuple[int, ...], old_max: int, new_max: int) -> tuple[int, ...]:
    """LR decay steps at the same fractions of a new schedule length (strictly below it, no repeats)."""
    scaled = {max(1, round(s * new_max / old_max)) for s in steps}
    return tuple(sorted(s for s in scaled if s < new_max))


def build_d2_config(
    preset: Preset,
    cfg: DetectionConfig,
    *,
    backbone: BackboneWeights,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    num_classes: int,
    train_name: str,
    test_name: str,
    output_dir: str,
    seed: int,
    device: str,
    num_gpus: int,
) -> CfgNode:
    """The frozen detectron2 config of one trial; ``backbone`` says which route feeds it which weights."""
    c = get_cfg()
    c.merge_from_file(model_zoo.get_config_file(preset.base))
    flat: list[Any] = []
    for k, v in preset.d2.items():
        flat += [k, v]
    c.merge_from_list(flat)
    # converted torchvision weights (see module docstring)
    norm = "SyncBN" if num_gpus > 1 else "BN"
    c.INPUT.FORMAT = "RGB"
    c.MODEL.PIXEL_MEAN = [255.0 * m for m in mean]
    c.MODEL.PIXEL_STD = [255.0 * s for s in std]
    c.MODEL.RESNETS.STRIDE_IN_1X1 = False
    c.MODEL.RESNETS.NORM = norm
    # fine-tuned unless the preset freezes stages (detectron2's rule: 1 the stem, k ≥ 2 the stem and res2..resk;
    # 5 = the whole backbone, so that only FPN, RPN and ROI heads train); the model zoo's base config says 2
    c.MODEL.BACKBONE.FREEZE_AT = int(preset.d2.get("MODEL.BACKBONE.FREEZE_AT", 0))
    fpn = "fpn" in c.MODEL.BACKBONE.NAME.lower()
    if backbone.route == "adapter":
        if not fpn:
            raise ValueError(
                f"preset '{preset.name}' builds detectron2's own ResNet (C4 head); the adapter route "
                f"('{backbone.architecture}') feeds an FPN: use an FPN preset (e.g. digits-det-cpu)"
            )
        geometry = check_adapter_architecture(backbone.architecture)
        register_backbones()
        c.MODEL.BACKBONE.NAME = "build_byol_bench_fpn_backbone"
        add_adapter_config(c, backbone.architecture, backbone.path, backbone.sha256)
        # not read by the adapter; set so that config.yaml describes the model that ran
        resnet = resnet_settings(get_spec(backbone.architecture).torchvision_arch)
        resnet["RES2_OUT_CHANNELS"] = geometry["res2"].channels
        c.MODEL.WEIGHTS = ""
    else:
        resnet = check_architecture(backbone.architecture)
        c.MODEL.WEIGHTS = backbone.path
    c.MODEL.RESNETS.DEPTH = resnet["DEPTH"]
    c.MODEL.RESNETS.RES2_OUT_CHANNELS = resnet["RES2_OUT_CHANNELS"]
    if fpn:
        c.MODEL.FPN.NORM = norm
    elif resnet["DEPTH"] < 50:
        raise ValueError(
            f"preset '{preset.name}' uses the C4 (Res5) ROI head, which detectron2 builds from bottleneck "
            f"blocks only; ResNet-{resnet['DEPTH']} needs an FPN preset (e.g. digits-det-cpu)"
        )
    # data, run
    c.DATASETS.TRAIN = (train_name,)
    c.DATASETS.TEST = (test_name,)
    c.MODEL.ROI_HEADS.NUM_CLASSES = num_classes
    c.MODEL.DEVICE = device
    c.OUTPUT_DIR = output_dir
    c.SEED = seed
    if cfg.num_workers is not None:  # only an explicit setting replaces the preset's loader workers
        c.DATALOADER.NUM_WORKERS = cfg.num_workers
    if cfg.max_iter is not None:
        c.SOLVER.STEPS = _scaled_steps(tuple(c.SOLVER.STEPS), c.SOLVER.MAX_ITER, cfg.max_iter)
        c.SOLVER.WARMUP_ITERS = min(c.SOLVER.WARMUP_ITERS, max(1, cfg.max_iter // 5))
        c.SOLVER.MAX_ITER = cfg.max_iter
    if cfg.base_lr is not None:
        c.SOLVER.BASE_LR = cfg.base_lr
    if cfg.ims_per_batch is not None:
        c.SOLVER.IMS_PER_BATCH = cfg.ims_per_batch
    c.SOLVER.CHECKPOINT_PERIOD = c.SOLVER.MAX_ITER + 1  # no intermediate checkpoints
    # evaluate after the last iteration and, with eval_period (or the preset's TEST.EVAL_PERIOD), every so many
    # iterations too: AP against iterations (train.Trainer.curve); the base config's 0 means the end only
    c.TEST.EVAL_PERIOD = cfg.eval_period if cfg.eval_period is not None else int(preset.d2.get("TEST.EVAL_PERIOD", 0))
    c.freeze()
    return c
