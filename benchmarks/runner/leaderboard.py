"""Leaderboards: metric records → pandas variant × metric tables → Markdown / CSV / LaTeX, with provenance.

Aggregation is over seeds: mean, sample standard deviation (ddof=1; blank with one seed), number of
seeds, rank per metric (1 = best; ties share the best rank; ``lower_is_better`` metrics rank ascending) and
Δ = mean − the baseline row's mean. Columns are ``(group, metric)``, grouped by evaluation.

**One unit.** Records store accuracies as fractions (0–1) and COCO AP in points (0–100). Every rendering
(Markdown, CSV, LaTeX, terminal, plots) shows both in **percent**, names the unit in the column header
(``knn: top1_k20 (%)``, ``det: AP (%)``) and in the CSV's ``unit`` column; the frames themselves, and so the
suite's ``expected:`` checks, stay in the record's units. A metric's unit comes from the record's
``metric_units`` or, for older records, from its evaluator's registration (``downstream.registry``).
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from zoo.io import atomic_write_text, code_version, utc_now
from zoo.records import RecordError, read_record

__all__ = [
    "Leaderboard",
    "RecordSet",
    "read_records",
    "records_frame",
    "aggregate",
    "provenance",
    "render_markdown",
    "render_csv",
    "render_latex",
    "render_terminal",
    "format_cell",
    "DISPLAY_UNITS",
]

# stored unit -> (factor to the displayed value, displayed unit): one convention, percent
DISPLAY_UNITS: dict[str, tuple[float, str]] = {"fraction": (100.0, "%"), "AP points": (1.0, "%")}


@dataclass
class Leaderboard:
    """Variant × (group, metric) frames; rows in suite order, columns grouped by evaluation."""

    mean: pd.DataFrame
    std: pd.DataFrame
    n: pd.DataFrame
    rank: pd.DataFrame
    delta: pd.DataFrame | None
    baseline: str | None
    labels: dict[str, str] = field(default_factory=dict)
    lower_is_better: frozenset[str] = frozenset()
    units: dict[tuple[str, str], str] = field(default_factory=dict)  # stored unit per column (where known)

    @property
    def columns(self) -> list[tuple[str, str]]:
        return list(self.mean.columns)

    def display(self, col: tuple[str, str]) -> tuple[float, str | None]:
        """(factor from the stored value to the shown one, shown unit) of a column: percent, or as stored."""
        return DISPLAY_UNITS.get(self.units.get(col, ""), (1.0, None))

    def header(self, col: tuple[str, str], sep: str = ": ") -> str:
        """``knn: top1_k20 (%)``: the column name with its displayed unit."""
        unit = self.display(col)[1]
        return f"{col[0]}{sep}{col[1]}" + (f" ({unit})" if unit else "")

    def value(self, variant: str, metric: str) -> float:
        """Mean of ``group.metric`` for ``variant`` (NaN if absent)."""
        group, name = metric.split(".", 1)
        try:
            return float(self.mean.loc[variant, (group, name)])
        except KeyError:
            return math.nan

    def tidy(self) -> pd.DataFrame:
        """Long form: one row per (variant, group, metric) with mean, std, n, rank, delta."""
        rows = []
        for variant in self.mean.index:
            for col in self.mean.columns:
                k, unit = self.display(col)  # displayed units, as in every other rendering
                rows.append(
                    {
                        "variant": variant,
                        "label": self.labels.get(variant, variant),
                        "group": col[0],
                        "metric": col[1],
                        "unit": unit or "",
                        "mean": self.mean.loc[variant, col] * k,
                        "std": self.std.loc[variant, col] * k,
                        "n": int(self.n.loc[variant, col]),
                        "rank": self.rank.loc[variant, col],
                        "delta": None if self.delta is None else self.delta.loc[variant, col] * k,
                    }
                )
        return pd.DataFrame(rows)


def _metric_name(key: str, evaluator: str) -> str:
    for sep in (".", "/"):
        if key.startswith(evaluator + sep):
            return key[len(evaluator) + 1 :]
    return key


def _unit(rec: dict[str, Any], key: str, evaluator: str, metric: str) -> str | None:
    """The stored unit of a record's metric: its ``metric_units``, else its evaluator's registration."""
    if "metric_units" in rec:
        return (rec.get("metric_units") or {}).get(key)
    from downstream.registry import metric_unit

    return metric_unit(evaluator, metric)


@dataclass
class RecordSet:
    """The records of a plan's eval entries, each checked against its checksum (``zoo.records``)."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # job id -> record (verified or legacy)
    bad: list[str] = field(default_factory=list)  # "path: problem" of each record that cannot be trusted
    unsealed: int = 0  # legacy records without a checksum (read, not verified)
    unbound: int = 0  # records that name no job (``benchmark.job_id``): read, not checked against their entry


def read_records(entries: Iterable[dict[str, Any]], records_dir: str | Path) -> RecordSet:
    """Read and check the record of every eval entry that has one; a bad record is listed, never used.

    Each is checked against its checksum and against its entry's job id: a record copied from another job's
    passes its checksum, but is listed as bad.
    """
    out = RecordSet()
    for e in entries:
        path = Path(records_dir) / f"{e['id']}.json"
        if e["kind"] != "eval" or not path.exists():
            continue
        try:
            rec = read_record(path, job_id=e["id"])
        except RecordError as exc:
            out.bad.append(str(exc))
            continue
        out.records[e["id"]] = rec.data
        out.unsealed += int(not rec.sealed)
        out.unbound += int(rec.job_id is None)
    return out


def records_frame(
    entries: Iterable[dict[str, Any]], records_dir: str | Path, *, records: RecordSet | None = None
) -> pd.DataFrame:
    """One row per (variant, seed, group, metric) from the eval ``entries`` of a plan whose record exists.

    ``value`` is as stored; ``unit`` the stored unit (``fraction``, ``AP points``) or None. Records that fail
    their checksum or do not parse are left out (``read_records`` lists them); ``records``: already read.
    """
    entries = list(entries)
    records = records if records is not None else read_records(entries, records_dir)
    rows = []
    for e in entries:
        rec = records.records.get(e["id"]) if e["kind"] == "eval" else None
        if rec is None:
            continue
        evaluator = rec.get("evaluator", e["spec"].get("evaluator", ""))
        for key, value in (rec.get("metrics") or {}).items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            name = _metric_name(key, evaluator)
            rows.append(
                {
                    "variant": e["variant"],
                    "seed": e["seed"],
                    "group": e["group"],
                    "metric": name,
                    "value": float(value),
                    "job_id": e["id"],
                    "unit": _unit(rec, key, evaluator, name),
                }
            )
    return pd.DataFrame(rows, columns=["variant", "seed", "group", "metric", "value", "job_id", "unit"])


def aggregate(
    df: pd.DataFrame,
    variants: list[str] | None = None,
    *,
    baseline: str | None = None,
    metrics: list[str] | None = None,
    lower_is_better: Iterable[str] = (),
    labels: dict[str, str] | None = None,
) -> Leaderboard:
    """Mean ± std over seeds, seed counts, ranks and Δ against ``baseline`` (see the module docstring)."""
    lower = frozenset(lower_is_better)
    if df.empty:
        empty = pd.DataFrame(index=pd.Index(variants or [], name="variant"))
        return Leaderboard(empty, empty, empty, empty, None, baseline, dict(labels or {}), lower)
    grouped = df.groupby(["variant", "group", "metric"])["value"]
    stats = grouped.agg(["mean", "std", "count"])  # std: sample (ddof=1), NaN for one seed
    wide = {k: stats[k].unstack(["group", "metric"]) for k in ("mean", "std", "count")}
    if metrics:
        cols = [tuple(m.split(".", 1)) for m in metrics]
        for k in wide:
            wide[k] = wide[k].reindex(columns=pd.MultiIndex.from_tuples(cols, names=["group", "metric"]))
    else:  # groups in order of first appearance (suite order), metrics sorted within a group
        group_order = list(dict.fromkeys(df["group"]))
        cols = sorted(wide["mean"].columns, key=lambda c: (group_order.index(c[0]), c[1]))
        for k in wide:
            wide[k] = wide[k][cols]
    # every variant of the suite gets a row (one without records yet shows 0 seeds and blanks)
    order = list(variants or []) + [v for v in dict.fromkeys(df["variant"]) if v not in (variants or [])]
    mean = wide["mean"].reindex(order)
    std = wide["std"].reindex(order)
    n = wide["count"].reindex(order).fillna(0).astype(int)
    rank = pd.DataFrame(index=mean.index, columns=mean.columns, dtype=float)
    for col in mean.columns:
        ascending = f"{col[0]}.{col[1]}" in lower
        rank[col] = mean[col].rank(ascending=ascending, method="min")
    delta = None
    if baseline is not None and baseline in mean.index:
        delta = mean - mean.loc[baseline]
    units: dict[tuple[str, str], str] = {}
    if "unit" in df.columns:
        for (group, metric), unit in df.dropna(subset=["unit"]).groupby(["group", "metric"])["unit"].first().items():
            units[(group, metric)] = unit
    return Leaderboard(mean, std, n, rank, delta, baseline, dict(labels or {}), lower, units)


# provenance -------------------------------------------------------------------------------------------
def provenance(
    suite_name: str,
    *,
    records: Iterable[dict[str, Any]] = (),
    scale: str = "",
    description: str = "",
    commands: list[str] | None = None,
) -> dict[str, Any]:
    """Suite, scale, code versions (of the records and of this renderer), date, machines, the command."""
    shas, machines = set(), set()
    for rec in records:
        cv = rec.get("code_version") or {}
        if cv.get("git_sha"):
            shas.add(cv["git_sha"][:12] + ("+dirty" if cv.get("git_dirty") else ""))
        m = rec.get("machine") or {}
        gpu = m.get("gpu")
        machines.add(f"{m.get('cpu', '?')} ×{m.get('cpu_count', '?')} cpu" + (f", GPU {gpu}" if gpu else ", no GPU"))
    now = code_version()
    renderer = (now.get("git_sha") or "unknown")[:12] + ("+dirty" if now.get("git_dirty") else "")
    return {
        "suite": suite_name,
        "description": description,
        "scale": scale,
        "code_version": sorted(shas) or ["unknown"],
        "rendered_with": renderer,
        "date": utc_now(),
        "machine": sorted(machines) or ["unknown"],
        "command": commands or [],
    }


def _provenance_lines(prov: dict[str, Any]) -> list[str]:
    lines = [f"suite: {prov['suite']}"]
    if prov.get("description"):
        lines.append(f"description: {prov['description']}")
    if prov.get("scale"):
        lines.append(f"scale: {prov['scale']}")
    lines += [
        f"code version (records): {', '.join(prov['code_version'])}; tables rendered with {prov['rendered_with']}",
        f"date: {prov['date']}",
        f"machine: {'; '.join(prov['machine'])}",
    ]
    lines += [f"reproduce: {c}" for c in prov.get("command", [])]
    return lines


# rendering --------------------------------------------------------------------------------------------
def format_cell(mean: float, std: float, n: int, precision: int, n_max: int, rank: float | None = None) -> str:
    """``0.812 ± 0.005`` (std omitted for one seed), ``[n=2]`` when fewer seeds than the row, ``(#1)`` rank."""
    if n == 0 or mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    text = f"{mean:.{precision}f}"
    if n > 1 and std is not None and not math.isnan(std):
        text += f" ± {std:.{precision}f}"
    if n < n_max:
        text += f" [n={n}]"
    if rank is not None and not math.isnan(rank):
        text += f" (#{int(rank)})"
    return text


def _precision(lb: Leaderboard, col: tuple[str, str], precision: int) -> int:
    """Percent columns get two decimals fewer than the suite's precision (0.812 → 81.2), at least one."""
    return max(1, precision - 2) if lb.display(col)[1] == "%" else precision


def _main_rows(lb: Leaderboard, precision: int, with_rank: bool) -> tuple[list[str], list[list[str]]]:
    headers = ["variant", "seeds"] + [
        lb.header((g, m)) + (" ↓" if f"{g}.{m}" in lb.lower_is_better else "") for g, m in lb.columns
    ]
    rows = []
    for v in lb.mean.index:
        n_max = int(lb.n.loc[v].max()) if len(lb.columns) else 0
        cells = [
            format_cell(
                lb.mean.loc[v, c] * lb.display(c)[0],
                lb.std.loc[v, c] * lb.display(c)[0],
                int(lb.n.loc[v, c]),
                _precision(lb, c, precision),
                n_max,
                lb.rank.loc[v, c] if with_rank else None,
            )
            for c in lb.columns
        ]
        label = lb.labels.get(v, v) + (" (baseline)" if v == lb.baseline else "")
        rows.append([label, str(n_max), *cells])
    return headers, rows


def _delta_rows(lb: Leaderboard, precision: int) -> tuple[list[str], list[list[str]]]:
    assert lb.delta is not None
    headers = ["variant"] + [lb.header(c) for c in lb.columns]
    rows = []
    for v in lb.delta.index:
        cells = []
        for c in lb.columns:
            d = lb.delta.loc[v, c]
            if d is None or math.isnan(d):
                cells.append("—")
                continue
            d, p = d * lb.display(c)[0], _precision(lb, c, precision)
            cells.append("0" if v == lb.baseline else f"{d:+.{p}f}")
        rows.append([lb.labels.get(v, v), *cells])
    return headers, rows


def render_markdown(lb: Leaderboard, prov: dict[str, Any], precision: int = 3, title: str | None = None) -> str:
    """GitHub Markdown: provenance, the mean ± std (rank) table, then the Δ-vs-baseline table."""
    out = [f"# {title or 'Leaderboard: ' + prov['suite']}", ""]
    out += [f"- {line}" for line in _provenance_lines(prov)]
    out += [
        "",
        "Cells: mean ± sample std over seeds (std omitted with one seed), `(#r)` rank per column (1 = best; "
        "`↓` marks lower-is-better), `[n=k]` when a cell has fewer seeds than its row. `(%)`: accuracies and "
        "COCO AP alike in percent (a fraction 0.812 shows as 81.2; AP 32.0 is 32.0 %).",
        "",
    ]
    headers, rows = _main_rows(lb, precision, with_rank=True)
    out += [tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True), ""]
    if lb.delta is not None:
        out += [f"## Δ against `{lb.labels.get(lb.baseline, lb.baseline)}`", ""]
        headers, rows = _delta_rows(lb, precision)
        out += [tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True), ""]
    return "\n".join(out)


def render_csv(lb: Leaderboard, prov: dict[str, Any]) -> str:
    """Tidy CSV (variant, label, group, metric, mean, std, n, rank, delta) after ``# `` provenance lines.

    Read it back with ``pandas.read_csv(path, comment="#")``.
    """
    head = "".join(f"# {line}\n" for line in _provenance_lines(prov))
    return head + lb.tidy().to_csv(index=False, float_format="%.6g")


def render_latex(lb: Leaderboard, prov: dict[str, Any], precision: int = 3) -> str:
    """booktabs tabular; an evaluation-group header row with cmidrules spans its metrics."""
    headers, rows = _main_rows(lb, precision, with_rank=False)
    headers = ["variant", "seeds"] + [lb.header(c).split(": ", 1)[1] for c in lb.columns]
    body = tabulate(rows, headers=headers, tablefmt="latex_booktabs", disable_numparse=True)
    spans: list[tuple[str, int]] = []
    for g, _ in lb.columns:
        if spans and spans[-1][0] == g:
            spans[-1] = (g, spans[-1][1] + 1)
        else:
            spans.append((g, 1))
    group_row, rules, col = ["", ""], [], 3
    for g, width in spans:
        group_row.append(f"\\multicolumn{{{width}}}{{c}}{{{_latex_escape(g)}}}")
        rules.append(f"\\cmidrule(lr){{{col}-{col + width - 1}}}")
        col += width
    lines = body.splitlines()
    if spans:
        idx = lines.index("\\toprule") + 1
        lines[idx:idx] = [" & ".join(group_row) + " \\\\", " ".join(rules)]
    head = "".join(f"% {line}\n" for line in _provenance_lines(prov))
    return head + "% cells: mean ± sample std over seeds; (%): in percent\n" + "\n".join(lines) + "\n"


def _latex_escape(text: str) -> str:
    for a, b in (("\\", "\\textbackslash{}"), ("_", "\\_"), ("&", "\\&"), ("%", "\\%"), ("#", "\\#")):
        text = text.replace(a, b)
    return text


def render_terminal(lb: Leaderboard, prov: dict[str, Any], precision: int = 3) -> str:
    headers, rows = _main_rows(lb, precision, with_rank=True)
    lines = _provenance_lines(prov)
    return "\n".join([*lines, "", tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)])


def write_tables(lb: Leaderboard, prov: dict[str, Any], out_dir: str | Path, precision: int = 3) -> list[Path]:
    """``leaderboard.md``, ``leaderboard.csv``, ``leaderboard.tex`` (atomic writes)."""
    out_dir = Path(out_dir)
    return [
        atomic_write_text(out_dir / "leaderboard.md", render_markdown(lb, prov, precision)),
        atomic_write_text(out_dir / "leaderboard.csv", render_csv(lb, prov)),
        atomic_write_text(out_dir / "leaderboard.tex", render_latex(lb, prov, precision)),
    ]


def reproduce_commands(suite_file: str | None, results_dir: str | Path) -> list[str]:
    if not suite_file:
        return [f"byol-bench leaderboard {shlex.quote(str(results_dir))}"]
    try:
        rel = Path(suite_file).resolve().relative_to(Path.cwd())
    except ValueError:
        rel = Path(suite_file)
    return [f"byol-bench run {shlex.quote(str(rel))}"]
