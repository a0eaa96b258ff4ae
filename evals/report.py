"""The human-readable report of a run: ``report.md`` and, when matplotlib is importable, ``report.png``.

Written at the end of every run (runner.evaluate) from ``summary.json`` and ``results.jsonl``, and again on
demand with ``diffucode eval report DIR``. matplotlib is optional (the ``eval`` extra); without it the
report says the chart was skipped. Outcome classes: pass (``passed``), fail (``failed``), timeout, oom
(``error`` from the memory limit), crash (any other ``error``: killed by a signal, process or output limit).
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections import Counter
from pathlib import Path

from diffucode.errors import DiffucodeError
from diffucode.settings import InfillSettings

from .results import RESULTS, load_results

REPORT = "report.md"
CHART = "report.png"
MAX_FAILING_IDS = 50
OUTCOMES = ("pass", "fail", "timeout", "oom", "crash")


def outcome(record: dict) -> str:
    """pass / fail / timeout / oom / crash for one results.jsonl record."""
    status = record.get("status")
    if status == "passed":
        return "pass"
    if status == "failed":
        return "fail"
    if status == "timeout":
        return "timeout"
    reason = (record.get("reason") or "").lower()
    if "memory" in reason:
        return "oom"
    return "crash"


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f} %"


def _secs(value) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def _chart(path: Path, summary: dict, counts: Counter) -> str | None:
    """Draw report.png; returns why it was skipped, or None when drawn."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return "matplotlib is not installed (pip install 'diffucode[eval]' or pip install matplotlib)"
    ks = [f"pass@{k}" for k in summary.get("settings", {}).get("k", [1])]
    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    per_cat = summary.get("per_category")
    if per_cat:
        names = list(per_cat)
        width = 0.8 / max(1, len(ks))
        for j, k in enumerate(ks):
            values = [100 * (per_cat[c].get(k) or 0.0) for c in names]
            xs = [i + j * width for i in range(len(names))]
            ax.bar(xs, values, width=width, label=k)
        ax.set_xticks([i + width * (len(ks) - 1) / 2 for i in range(len(names))], names)
        ax.set_title("pass@k per category")
        ax.legend(loc="upper center", ncol=len(ks), fontsize="small")
    else:
        labels, values = [], []
        for k in ks:
            labels.append(k)
            values.append(100 * (summary.get(k) or 0.0))
        for k, v in (summary.get("base") or {}).items():
            labels.append(f"base {k}")
            values.append(100 * (v or 0.0))
        bars = ax.bar(labels, values, color="tab:blue")
        for bar, v in zip(bars, values):
            ax.annotate(f"{v:.1f}", (bar.get_x() + bar.get_width() / 2, v), ha="center", va="bottom")
        ax.set_title("pass@k")
    ax.set_ylabel("%")
    ax.set_ylim(0, 115)
    colors = {"pass": "tab:green", "fail": "tab:red", "timeout": "tab:orange", "oom": "tab:purple",
              "crash": "tab:gray"}
    ax2.bar(list(OUTCOMES), [counts.get(o, 0) for o in OUTCOMES], color=[colors[o] for o in OUTCOMES])
    ax2.set_title("outcomes (samples)")
    fig.suptitle(f"{summary.get('taskset')} - {summary.get('model') or summary.get('generator')}")
    fig.tight_layout()
    fig.savefig(path)
    return None


def _effective(key: str, value, summary: dict) -> str:
    """A setting as it took effect: a generation setting left unset shows the engine's default."""
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if value is None and summary.get("generator") == "model" and key in _GENERATION_DEFAULTS:
        default = _GENERATION_DEFAULTS[key]
        return "the engine's (unset)" if default is None else f"{default} (default)"
    return str(value)


def _overview(summary: dict, records: list[dict]) -> list[str]:
    """The title and the table of what was run: task set, model, data, empty completions."""
    lines = [f"# Eval report: {summary.get('taskset')}", ""]
    lines += ["| | |", "|---|---|",
              f"| task set | `{summary.get('taskset')}`: {summary.get('n_tasks')} tasks, "
              f"{summary.get('n_tasks_with_results')} with results, {summary.get('samples')} samples |",
              f"| model | {summary.get('model') or '-'} |",
              f"| generator | {summary.get('generator') or '-'} |",
              f"| complete | {'yes' if summary.get('complete') else 'no (partial run)'} |"]
    for src in summary.get("data", []):
        lines.append(f"| data | `{src.get('path')}` ({src.get('origin')}, {src.get('records')} records), "
                     f"sha256 `{src.get('sha256')}` |")
    for note in summary.get("data_notes", []):
        lines.append(f"| data note | {note} |")
    empty = sum(1 for r in records if not str(r.get("completion", "")).strip())
    if records and empty == len(records):
        lines.append(f"| note | every completion is empty ({empty} of {len(records)}): the model wrote nothing, "
                     "or each of its results was refused as one that would delete code; the passes are tasks "
                     "whose tests pass without the missing code |")
    elif empty:
        lines.append(f"| empty completions | {empty} of {len(records)} |")
    return lines


def _settings_section(summary: dict, settings: dict) -> list[str]:
    lines = ["", "## Settings", "", "| setting | value |", "|---|---|"]
    for key, value in settings.items():
        lines.append(f"| {key} | {_effective(key, value, summary)} |")
    return lines


def _pass_at_k_section(summary: dict, ks: list[str]) -> list[str]:
    lines = ["", "## pass@k", "", "| metric | value | tasks averaged |", "|---|---|---|"]
    for k in ks:
        lines.append(f"| {k} | {_pct(summary.get(k))} | {summary.get('tasks_per_k', {}).get(k, '')} |")
    for k, v in (summary.get("base") or {}).items():
        lines.append(f"| base {k} | {_pct(v)} | |")
    return lines


def _outcomes_section(records: list[dict]) -> list[str]:
    counts = Counter(outcome(r) for r in records)
    total = sum(counts.values())
    lines = ["", "## Outcomes (samples)", "", "| " + " | ".join(OUTCOMES) + " | total |",
             "|" + "---|" * (len(OUTCOMES) + 1),
             "| " + " | ".join(str(counts.get(o, 0)) for o in OUTCOMES) + f" | {total} |"]
    reasons = Counter(r.get("reason") or "" for r in records if outcome(r) in ("timeout", "oom", "crash"))
    if reasons:
        lines += ["", "Non-test failures by reason: " + "; ".join(f"{n} x {why}" for why, n in reasons.most_common(8))]
    return lines


def _time_section(summary: dict, records: list[dict]) -> list[str]:
    timings = summary.get("timings", {})
    durations = sorted(r["duration_s"] for r in records if isinstance(r.get("duration_s"), (int, float)))
    gens = [r["generate_s"] for r in records if isinstance(r.get("generate_s"), (int, float))]
    lines = ["", "## Time", "", "| | |", "|---|---|",
             f"| wall (last run) | {_secs(timings.get('wall_s'))} |",
             f"| generation (last run, total) | {_secs(timings.get('generate_s'))} |",
             f"| execution (last run, sum over samples) | {_secs(timings.get('execute_s'))} |",
             f"| samples run (last run) | {timings.get('samples_this_run', 'n/a')} |"]
    if durations:
        p95 = durations[min(len(durations) - 1, int(0.95 * len(durations)))]
        lines.append(f"| execution per sample: median / p95 / max | {_secs(statistics.median(durations))} / "
                     f"{_secs(p95)} / {_secs(durations[-1])} |")
    if gens:
        lines.append(f"| generation per sample: median / max | {_secs(statistics.median(gens))} / {_secs(max(gens))} |")
    return lines


def _category_section(summary: dict, ks: list[str]) -> list[str]:
    per_cat = summary.get("per_category")
    if not per_cat:
        return []
    lines = ["", "## Per category", "", "| category | tasks | with results | " + " | ".join(ks) + " |",
             "|---|---|---|" + "---|" * len(ks)]
    for cat, entry in per_cat.items():
        lines.append(f"| {cat} | {entry.get('n_tasks')} | {entry.get('n_tasks_with_results')} | "
                     + " | ".join(_pct(entry.get(k)) for k in ks) + " |")
    return lines


def _failing_section(summary: dict) -> list[str]:
    per_task = summary.get("per_task", {})
    failing = [tid for tid, e in per_task.items() if e.get("c", 0) == 0]
    lines = ["", f"## Failing tasks (no sample passed): {len(failing)} of {len(per_task)}", ""]
    if failing:
        shown = ", ".join(f"`{t}`" for t in failing[:MAX_FAILING_IDS])
        more = len(failing) - MAX_FAILING_IDS
        lines.append(shown + (f", ... and {more} more (summary.json, per_task)" if more > 0 else ""))
    else:
        lines.append("None.")
    if summary.get("canonical_failures"):
        lines += ["", "Tasks whose canonical solution failed during calibration: "
                  + ", ".join(f"`{t}`" for t in summary["canonical_failures"])]
    return lines


def _closing(summary: dict, chart_note: str) -> list[str]:
    """The chart (or why it is missing) and where the run's files are."""
    lines = ["", "## Chart", ""]
    lines.append(f"![pass@k and outcomes]({CHART})" if not chart_note else f"Chart skipped: {chart_note}.")
    env = summary.get("environment", {})
    lines += ["", f"Python {env.get('python')} on {env.get('platform')}; results: `results.jsonl`, "
              "summary: `summary.json`.", ""]
    return lines


def render(summary: dict, records: list[dict], *, chart_note: str) -> str:
    """The Markdown text of the report."""
    settings = dict(summary.get("settings", {}))
    ks = [f"pass@{k}" for k in settings.get("k", [1])]
    lines = _overview(summary, records)
    lines += _settings_section(summary, settings)
    lines += _pass_at_k_section(summary, ks)
    lines += _outcomes_section(records)
    lines += _time_section(summary, records)
    lines += _category_section(summary, ks)
    lines += _failing_section(summary)
    lines += _closing(summary, chart_note)
    return "\n".join(lines)


# The engine's defaults of the generation settings (diffucode.settings, no torch), for the report's Settings
_GENERATION_DEFAULTS = {f.name: f.default for f in dataclasses.fields(InfillSettings)}

# What every summary.json of this harness has (runner.summarize), with its type.
SUMMARY_KEYS = {"taskset": str, "settings": dict, "per_task": dict}


def _check_summary(summary: object, path: Path) -> None:
    """Refuse a summary.json that runner.summarize did not write (else a report titled "None")."""
    if not isinstance(summary, dict):
        raise DiffucodeError(f"{path} is not an eval summary (expected a JSON object)")
    bad = [key for key, kind in SUMMARY_KEYS.items() if not isinstance(summary.get(key), kind)]
    if bad:
        raise DiffucodeError(f"{path} is not a summary written by diffucode eval (missing or malformed: "
                             f"{', '.join(bad)}); rerun the eval command to write it again")


def write_report(out_dir: str | Path, *, summary: dict | None = None,
                 records: dict | list | None = None) -> Path:
    """Write ``report.md`` (and ``report.png`` if matplotlib is importable) into ``out_dir``."""
    out_dir = Path(out_dir)
    if summary is None:
        path = out_dir / "summary.json"
        if not path.is_file():
            raise DiffucodeError(f"{out_dir} has no summary.json (is it an eval run folder?)")
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise DiffucodeError(f"cannot read {path}: {e}; rerun the eval command to write it again") from None
        _check_summary(summary, path)
    if records is None:
        records = load_results(out_dir / RESULTS, repair=False)
    rows = list(records.values()) if isinstance(records, dict) else list(records)
    ids = set(summary.get("per_task", {}))
    rows = [r for r in rows if r.get("task_id") in ids]
    chart = out_dir / CHART
    try:
        note = _chart(chart, summary, Counter(outcome(r) for r in rows))
    except Exception as e:  # a broken matplotlib (or font cache, backend...) never costs the report
        note = f"drawing the chart failed ({type(e).__name__}: {e})"
    if note:
        chart.unlink(missing_ok=True)
    report = out_dir / REPORT
    tmp = report.with_suffix(".md.tmp")
    tmp.write_text(render(summary, rows, chart_note=note or ""), encoding="utf-8")
    tmp.replace(report)
    return report


__all__ = ["CHART", "OUTCOMES", "REPORT", "outcome", "render", "write_report"]
