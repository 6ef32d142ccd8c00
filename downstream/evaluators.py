"""Explicit imports of the built-in evaluators: importing this module registers them.

Each import is guarded only against a missing optional dependency of that evaluator (detectron2), so the
others stay usable where it is not installed.
"""
