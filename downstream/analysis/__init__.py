"""Representation analysis (issue #7): what a backbone learned, measured and seen.

- ``metrics``: pure maths — effective rank (Roy & Vetterli 2007), the l2-normalised std collapse signal
  (Chen & He 2021), alignment / uniformity (Wang & Isola 2020).
- ``views``: small deterministic tensor transforms (crop, colour, blur, solarize, grayscale) for augmented
  views, independent of ``pretrain/``.
- ``embed``: embeddings of an artifact at a backbone stage or through its exported heads.
- ``evaluators``: the ``geometry``, ``layerwise`` and ``invariance`` evaluators (the usual contract).
- ``occlusion``, ``figures``: occlusion sensitivity (captum), t-SNE / UMAP panels, retrieval grids.
- ``report``: ``build_report`` — one Markdown page per suite with tables, plots and pictures.
"""
