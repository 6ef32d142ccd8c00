"""Detection transfer with detectron2 (issue #5): the ``detection`` evaluator.

Faster R-CNN built from detectron2's model-zoo configs plus our preset overrides (``configs/*.yaml``),
initialised from the artifact's ResNet converted by ``zoo.detectron2_format`` and loaded strictly,
fine-tuned end to end (BN in training mode, ``FREEZE_AT=0``) and evaluated with ``COCOEvaluator``.
Every module here but ``rescore`` (pycocotools only) imports detectron2; ``downstream.evaluators`` imports
them only where it is installed (``tools/install_detectron2.py``).
"""
