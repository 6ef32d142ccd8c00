"""Benchmark suites: plan → run (resumable, cached by job identity) → results store → leaderboards.

- ``suite``: the suite YAML schema (validated dataclasses; a bad key is a ``ConfigError`` naming it).
- ``plan``: turns a suite into a graph of jobs whose identity is the hash of their resolved inputs.
- ``stages``: the small adapters that call the pretraining / baseline / evaluation stages.
- ``store``: the results directory (one state file and one record per job, atomic writes, file locks).
- ``executors``: run the missing jobs locally (sequential or parallel) or through submitit (Slurm).
- ``leaderboard`` / ``plots`` / ``expect``: pandas tables, renderings, figures and expected-result checks.
"""
