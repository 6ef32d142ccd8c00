"""Machine-readable results of the ``benchmarks/perf/*.py`` scripts and the README table built from them.

Every perf script ends with ``write_perf_record(...)``: one JSON file ``results/perf/<name>.json`` holding
the command that produced it, the code version (git SHA + dirty flag), the machine (CPU model, cores, GPU),
the torch threads, the load average before and after, each side's median (and every repeat) and the
ratio with its definition. ``benchmarks/perf/report.py`` renders every record of a folder into one Markdown
table (``render_perf_table``) and rewrites the README's ``<!-- section:perf-table -->`` block with it
(``replace_section``), so the published table is always the files' content, never hand-copied numbers.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tabulate import tabulate

from zoo.io import atomic_write_json, code_version, machine_info, read_json, utc_now

__all__ = [
    "SCHEMA_VERSION",
    "RESULTS_DIR",
    "side",
    "perf_record",
    "write_perf_record",
    "load_perf_records",
    "render_perf_table",
    "replace_section",
    "load_average",
]

SCHEMA_VERSION = 1
RESULTS_DIR = Path(__file__).resolve().parents[1] / "results" / "perf"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def load_average() -> list[float] | None:
    """1, 5 and 15-minute load averages (``None`` where the OS has none): how busy the machine was."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def side(label: str, values: Sequence[float], **extra: Any) -> dict[str, Any]:
    """One side of a comparison: its label, the median of ``values`` (every repeat kept) and any extras."""
    if not values:
        raise ValueError(f"side '{label}' has no measurements")
    ordered = sorted(float(v) for v in values)
    n = len(ordered)
    median = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
    return {"label": label, "median": median, "each": [float(v) for v in values], **extra}


def perf_record(
    name: str,
    *,
    what: str,
    metric: str,
    unit: str,
    higher_is_better: bool,
    sides: dict[str, dict[str, Any]],
    ratio: float | None,
    ratio_definition: str | None,
    threads: int | None,
    device: str,
    goal: str | None = None,
    load_before: list[float] | None = None,
    details: dict[str, Any] | None = None,
    command: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The record of one perf measurement (see the module docstring); ``command`` defaults to ``sys.argv``."""
    if not _NAME.match(name):
        raise ValueError(f"perf record name '{name}' must be letters, digits, '.', '_' or '-'")
    argv = list(command) if command is not None else [Path(sys.argv[0]).as_posix(), *sys.argv[1:]]
    script = argv[0]
    try:
        script = Path(script).resolve().relative_to(RESULTS_DIR.parents[1]).as_posix()
    except ValueError:
        pass
    info = machine_info()
    return {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "what": what,
        "command": shlex.join(["python", script, *argv[1:]]),
        "metric": metric,
        "unit": unit,
        "higher_is_better": higher_is_better,
        "sides": sides,
        "ratio": ratio,
        "ratio_definition": ratio_definition,
        "goal": goal,
        "threads": threads,
        "device": device,
        "machine": {
            "cpu": info.get("cpu"),
            "cpu_count": info.get("cpu_count"),
            "gpu": info.get("gpu"),
            "torch": info.get("torch"),
            "python": info.get("python"),
            "hostname": info.get("hostname"),
        },
        "load_average": {"before": load_before, "after": load_average()},
        "code_version": code_version(),
        "created": utc_now(),
        "details": details or {},
    }


def write_perf_record(record: dict[str, Any], results_dir: str | os.PathLike | None = None) -> Path:
    """Write ``record`` atomically to ``<results_dir>/<name>.json`` and return the path.

    Default folder: ``$BYOL_BENCH_PERF_RESULTS`` if set (the GPU check and tests point it elsewhere), else
    ``results/perf/``.
    """
    env = os.environ.get("BYOL_BENCH_PERF_RESULTS")
    out = Path(results_dir) if results_dir is not None else Path(env) if env else RESULTS_DIR
    return atomic_write_json(out / f"{record['name']}.json", record)


def load_perf_records(results_dir: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Every perf record directly in ``results_dir`` (not its sub-folders), sorted by name."""
    folder = Path(results_dir) if results_dir is not None else RESULTS_DIR
    records = []
    for path in sorted(folder.glob("*.json")):
        rec = read_json(path)
        if not isinstance(rec, dict) or rec.get("schema_version") != SCHEMA_VERSION or "sides" not in rec:
            raise ValueError(f"{path} is not a perf record (schema_version {SCHEMA_VERSION} with 'sides')")
        records.append(rec)
    return records


def _num(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"


def _cell(s: dict[str, Any] | None, unit: str) -> str:
    if s is None:
        return "–"
    return f"{_num(s['median'])} {unit} ({s['label']}, n={len(s['each'])})"


def render_perf_table(records: Sequence[dict[str, Any]]) -> str:
    """A GitHub Markdown table, one row per record: medians, ratio, goal, threads, load, machine, code."""
    headers = ["benchmark", "what", "ours (median)", "reference (median)", "ratio", "goal", "threads", "load"]
    headers += ["machine", "code", "date"]
    rows = []
    for r in records:
        sides = r["sides"]
        ours = sides.get("ours")
        refs = [s for k, s in sides.items() if k != "ours"]
        ref = refs[0] if refs else None

        ratio = "–" if r.get("ratio") is None else f"**{r['ratio']:.2f}×** ({r.get('ratio_definition') or ''})"
        load = r.get("load_average") or {}
        before, after = load.get("before"), load.get("after")
        load_s = "–" if not before and not after else f"{(before or after)[0]:.1f} → {(after or before)[0]:.1f}"
        m = r.get("machine", {})
        machine = f"{m.get('gpu') or m.get('cpu')}, {m.get('cpu_count')} cores"
        cv = r.get("code_version", {})
        code = (cv.get("git_sha") or "unknown")[:8] + ("+dirty" if cv.get("git_dirty") else "")
        rows.append(
            [
                f"`{r['name']}`",
                r["what"],
                _cell(ours, r["unit"]),
                _cell(ref, r["unit"]),
                ratio,
                r.get("goal") or "–",
                str(r.get("threads") or "–"),
                load_s,
                machine,
                f"`{code}`",
                (r.get("created") or "")[:10],
            ]
        )
    table = tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
    commands = [f"- `{r['name']}`: `{r['command']}`" for r in records]
    return "\n".join([table, "", "Commands:", "", *commands])


def replace_section(text: str, name: str, body: str) -> str:
    """``text`` with everything between ``<!-- section:name -->`` and ``<!-- /section:name -->`` set to ``body``.

    Exactly one such pair must exist (an error says what is missing); the markers themselves are kept.
    """
    begin, end = f"<!-- section:{name} -->", f"<!-- /section:{name} -->"
    if text.count(begin) != 1 or text.count(end) != 1:
        raise ValueError(
            f"expected exactly one '{begin}' … '{end}' pair, found {text.count(begin)} / {text.count(end)}"
        )
    i, j = text.index(begin) + len(begin), text.index(end)
    if j < i:
        raise ValueError(f"'{end}' comes before '{begin}'")
    return text[:i] + "\n" + body.strip("\n") + "\n" + text[j:]
