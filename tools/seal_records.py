"""One-off: give metric records written before records carried a checksum their ``record_sha256`` (issue 24.4).

    python tools/seal_records.py results/*/records

Every ``*.json`` record in the given folders (or the given files) that has no checksum gets one; nothing
else in it changes (the file is rewritten in the same format: indented, keys sorted). A record that already
has one is checked, not rewritten. The job hashes live in ``plan.json`` and the records' ``benchmark`` blocks,
which are left as they are, so the published suites keep their jobs; ``byol-bench rescore`` still applies.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from zoo.records import RecordError, read_record, write_record  # noqa: E402 - after the path above


def seal(paths: list[str]) -> int:
    """Seal the records under ``paths``; returns the number of bad records (not rewritten)."""
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        files += sorted(p.glob("*.json")) if p.is_dir() else [p]
    sealed = already = bad = 0
    for path in files:
        try:
            rec = read_record(path)
        except RecordError as exc:
            print(f"BAD RECORD {exc}", file=sys.stderr)
            bad += 1
            continue
        if "evaluator" not in rec.data:
            continue  # not a metric record
        if rec.sealed:
            already += 1
            continue
        write_record(path, rec.data)
        sealed += 1
    print(f"seal_records: {sealed} sealed, {already} already sealed, {bad} bad, of {len(files)} file(s)")
    return bad


if __name__ == "__main__":
    sys.exit(1 if seal(sys.argv[1:]) else 0)
