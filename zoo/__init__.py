"""Shared foundations of byol-bench: datasets, backbones, the artifact format, configs and I/O.

Both stages (``pretrain`` and ``downstream``) import this package; it imports neither of them.
"""

__version__ = "0.1.0"
