"""The eval loop: canonical solutions score 100 %, wrong ones 0 %, results resume, Ctrl-C keeps a valid file."""

import io
import json
import threading
import time
from pathlib import Path

import pytest

from diffucode_evals.data import Task, TaskSet
from diffucode_evals.runner import (
    CALIBRATION,
    RESULTS,
    SAMPLES,
    SUMMARY,
    CanonicalGenerator,
    ResumeMismatch,
    RunConfig,
    evaluate,
    load_results,
)

from tests.benchdata import load_or_skip


def config(out: Path, **kw) -> RunConfig:
    kw.setdefault("progress", False)
    kw.setdefault("identity", {"generator": "test"})
    return RunConfig(out_dir=out, **kw)


def lines(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]  # every line must be valid JSON


class Counting:
    """Wraps a generator and records which (task, sample) pairs it was asked for."""

    def __init__(self, inner=CanonicalGenerator()):
        self.inner, self.calls = inner, []

    def __call__(self, task, i):
        self.calls.append((task.task_id, i))
        return self.inner(task, i)


def run_canonical(name: str, tmp_path: Path, limit: int | None = None) -> dict:
    ts = load_or_skip(name).select(limit=limit)
    t0 = time.monotonic()
    summary = evaluate(ts, CanonicalGenerator(), config(tmp_path / name))
    summary["_elapsed"] = time.monotonic() - t0
    return summary


# ---------------------------------------------------------------- canonical = 100 %


@pytest.mark.slow
@pytest.mark.parametrize("name", ["humaneval", "humaneval-infill-span-light"])
def test_canonical_solutions_pass_all_164(name, tmp_path):
    s = run_canonical(name, tmp_path)
    assert s["n_tasks"] == 164 and s["samples"] == 164
    assert s["pass@1"] == 1.0, {k: v for k, v in s["per_task"].items() if v["c"] == 0}
    print(f"{name}: 164 canonical solutions in {s['_elapsed']:.1f} s")


@pytest.mark.parametrize("name, limit", [("humaneval", 20), ("humaneval-infill-span-light", 20),
                                         ("humaneval-infill-single", 5), ("mbpp", 5), ("mbpp-sanitized", 5)])
def test_canonical_solutions_pass_fast_subset(name, limit, tmp_path):
    s = run_canonical(name, tmp_path, limit)
    assert s["pass@1"] == 1.0 and s["samples"] == limit and s["complete"]


def test_plus_sets_report_base_and_plus(tmp_path):
    he = load_or_skip("humaneval+").select(tasks=["0", "32"])
    s = evaluate(he, CanonicalGenerator(), config(tmp_path / "he"))
    assert s["pass@1"] == 1.0 and s["base"]["pass@1"] == 1.0
    mbpp = load_or_skip("mbpp+").select(limit=2)
    s = evaluate(mbpp, CanonicalGenerator(), config(tmp_path / "mbpp"))
    assert s["pass@1"] == 1.0 and s["base"]["pass@1"] == 1.0
    s = evaluate(mbpp, lambda t, i: "def nothing():\n    pass\n", config(tmp_path / "wrong"))
    rows = lines(tmp_path / "wrong" / RESULTS)
    assert s["pass@1"] == 0.0 and s["base"]["pass@1"] == 0.0
    assert all(r["reason"].startswith("base tests:") for r in rows)  # plus tests skipped after a base fail


# ---------------------------------------------------------------- wrong = 0 %


def test_wrong_generator_scores_zero(tmp_path):
    he = load_or_skip("humaneval").select(limit=10)
    s = evaluate(he, lambda t, i: "    raise NotImplementedError\n", config(tmp_path / "he"))
    assert s["pass@1"] == 0.0 and s["status_counts"] == {"failed": 10}
    infill = load_or_skip("humaneval-infill-span-light").select(limit=5)
    s = evaluate(infill, lambda t, i: "", config(tmp_path / "infill"))
    assert s["pass@1"] == 0.0


def test_early_exit_completion_does_not_pass(tmp_path):
    he = load_or_skip("humaneval").select(limit=3)
    s = evaluate(he, lambda t, i: "    import sys\n    sys.exit(0)\n", config(tmp_path / "x", sanitize=False))
    assert s["pass@1"] == 0.0


def test_pass_at_k_over_several_samples(tmp_path):
    he = load_or_skip("humaneval").select(limit=3)

    def half_right(task, i):  # samples 0 and 2 correct, 1 and 3 wrong: n=4, c=2 per task
        return task.canonical_solution if i % 2 == 0 else "    return None\n"

    s = evaluate(he, half_right, config(tmp_path / "k", n_samples=4, ks=(1, 2, 4)))
    assert s["pass@1"] == pytest.approx(0.5)
    assert s["pass@2"] == pytest.approx(1 - 1 / 6)  # 1 - C(2,2)/C(4,2)
    assert s["pass@4"] == 1.0
    assert s["per_task"]["HumanEval/0"] == {"n": 4, "c": 2}


# ---------------------------------------------------------------- files, resume, interrupt


def test_results_and_summary_files(tmp_path):
    he = load_or_skip("humaneval").select(limit=3)
    stream = io.StringIO()
    s = evaluate(he, lambda t, i: t.canonical_solution + "\n\ndef junk(:\n", config(tmp_path, progress=True),
                 stream=stream)
    rows = sorted(lines(tmp_path / RESULTS), key=lambda r: r["task_id"])  # file order = finishing order
    assert [(r["task_id"], r["sample_id"]) for r in rows] == [(f"HumanEval/{i}", 0) for i in range(3)]
    r = rows[0]
    assert r["passed"] and r["status"] == "passed" and r["completion"] == he.tasks[0].canonical_solution + "\n"
    assert "def junk" in r["raw_completion"]  # the sanitizer cut it; the raw text is kept
    for key in ("duration_s", "exit_code", "stdout_tail", "stderr_tail", "timeout_s", "generate_s", "reason"):
        assert key in r
    on_disk = json.loads((tmp_path / SUMMARY).read_text())
    assert on_disk == json.loads(json.dumps(s))
    assert s["data"][0]["sha256"] == "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef"
    assert s["settings"]["timeout_s"] == 10.0 and s["complete"] and s["timings"]["samples_this_run"] == 3
    assert stream.getvalue() == ""  # not a terminal: no progress output


def test_resume_runs_only_the_missing_pairs(tmp_path):
    he = load_or_skip("humaneval").select(limit=5)
    evaluate(he, CanonicalGenerator(), config(tmp_path, n_samples=2))
    path = tmp_path / RESULTS
    text = path.read_text()
    kept = text.splitlines(keepends=True)[:4]
    torn = text.splitlines(keepends=True)[4][:25]  # a hard kill mid-line
    path.write_text("".join(kept) + torn)
    done_before = {(r["task_id"], r["sample_id"]) for r in map(json.loads, kept)}
    # samples.jsonl holds the generations; keep those of the finished pairs only (a kill before the rest)
    samples = tmp_path / SAMPLES
    keep = [ln for ln in samples.read_text().splitlines(keepends=True)
            if (json.loads(ln)["task_id"], json.loads(ln)["sample_id"]) in done_before]
    samples.write_text("".join(keep))

    gen = Counting()
    s = evaluate(he, gen, config(tmp_path, n_samples=2))
    every = {(t.task_id, i) for t in he.tasks for i in range(2)}
    assert sorted(gen.calls) == sorted(every - done_before)
    rows = lines(path)
    assert len(rows) == 10 and {(r["task_id"], r["sample_id"]) for r in rows} == every
    assert s["complete"] and s["pass@1"] == 1.0

    again = Counting()
    evaluate(he, again, config(tmp_path, n_samples=2))
    assert again.calls == []  # nothing left to do


def test_generated_samples_are_executed_not_generated_again(tmp_path):
    he = load_or_skip("humaneval").select(limit=3)
    first = Counting()
    out = evaluate(he, first, config(tmp_path, generate_only=True))
    assert out["generated"] == 3 and len(first.calls) == 3
    assert not (tmp_path / RESULTS).exists() or lines(tmp_path / RESULTS) == []
    rows = lines(tmp_path / SAMPLES)
    assert [(r["task_id"], r["sample_id"]) for r in rows] == [(t.task_id, 0) for t in he.tasks]
    assert all(r["completion"] == t.canonical_solution for r, t in zip(rows, he.tasks))
    assert first.calls == [(t.task_id, 0) for t in he.tasks]
    again = Counting()
    s = evaluate(he, again, config(tmp_path))  # the same run without --generate-only: executes them
    assert again.calls == [] and s["pass@1"] == 1.0 and s["complete"]


def test_more_samples_extends_a_run(tmp_path):
    he = load_or_skip("humaneval").select(limit=2)
    evaluate(he, CanonicalGenerator(), config(tmp_path, n_samples=1))
    gen = Counting()
    s = evaluate(he, gen, config(tmp_path, n_samples=3, ks=(1, 3)))
    assert sorted(gen.calls) == [("HumanEval/0", 1), ("HumanEval/0", 2), ("HumanEval/1", 1), ("HumanEval/1", 2)]
    assert s["samples"] == 6


def test_ctrl_c_leaves_a_valid_jsonl_and_the_rerun_finishes(tmp_path):
    he = load_or_skip("humaneval").select(limit=8)

    class Interrupting(Counting):
        def __call__(self, task, i):
            if len(self.calls) == 4:
                raise KeyboardInterrupt
            return super().__call__(task, i)

    with pytest.raises(KeyboardInterrupt):
        evaluate(he, Interrupting(), config(tmp_path))
    rows = lines(tmp_path / RESULTS)
    assert len(rows) <= 4 and all(r["passed"] for r in rows)
    assert json.loads((tmp_path / SUMMARY).read_text())["complete"] is False

    generated = lines(tmp_path / SAMPLES)
    assert len(generated) == 4  # generated before the interrupt, kept even if not executed yet

    gen = Counting()
    s = evaluate(he, gen, config(tmp_path))
    assert len(gen.calls) == 8 - len(generated) and s["complete"] and s["pass@1"] == 1.0


def test_ctrl_c_kills_running_programs_promptly(tmp_path):
    he = load_or_skip("humaneval").select(limit=5)
    calls = []

    def hang_then_interrupt(task, i):
        calls.append(task.task_id)
        if len(calls) == 3:
            time.sleep(0.5)  # the two hanging programs are running now
            raise KeyboardInterrupt
        return "    while True:\n        pass\n"

    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        evaluate(he, hang_then_interrupt, config(tmp_path, timeout_s=60, workers=2))
    assert time.monotonic() - t0 < 5
    assert lines(tmp_path / RESULTS) == []  # killed runs are not results; a rerun redoes them


def test_cancel_event_from_another_thread(tmp_path):
    he = load_or_skip("humaneval").select(limit=4)
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    t0 = time.monotonic()
    evaluate(he, lambda t, i: "    while True:\n        pass\n", config(tmp_path, timeout_s=60, workers=4),
             cancel=cancel)
    assert time.monotonic() - t0 < 5
    assert lines(tmp_path / RESULTS) == []


def test_a_different_run_in_the_same_folder_is_refused(tmp_path):
    he = load_or_skip("humaneval").select(limit=1)
    evaluate(he, CanonicalGenerator(), config(tmp_path, identity={"generator": "canonical"}))
    with pytest.raises(ResumeMismatch, match="generator"):
        evaluate(he, CanonicalGenerator(), config(tmp_path, identity={"generator": "model", "model": "m"}))
    s = evaluate(he, CanonicalGenerator(), config(tmp_path, identity={"generator": "model"}, overwrite=True))
    assert s["generator"] == "model" and len(lines(tmp_path / RESULTS)) == 1


def test_load_results_skips_damaged_lines(tmp_path):
    path = tmp_path / RESULTS
    path.write_text('{"task_id": "a", "sample_id": 0, "passed": true}\nGARBAGE\n{"task_id": "b", "sample_id"')
    assert list(load_results(path)) == [("a", 0)]
    assert path.read_text().endswith("GARBAGE\n")  # the torn tail is cut so appends start on a new line


# ---------------------------------------------------------------- time limits


def _slow_task() -> TaskSet:
    slow = Task("Slow/0", "program", "sleep a little", "import time\ntime.sleep(0.6)\n", "assert True")
    return TaskSet("slow", (slow,), ())


def test_calibration_gives_slow_tasks_more_time(tmp_path):
    ts = _slow_task()
    s = evaluate(ts, CanonicalGenerator(), config(tmp_path / "plain", timeout_s=0.3))
    assert s["status_counts"] == {"timeout": 1}
    s = evaluate(ts, CanonicalGenerator(), config(tmp_path / "cal", timeout_s=0.3, calibrate=True))
    assert s["status_counts"] == {"passed": 1}
    cal = json.loads((tmp_path / "cal" / CALIBRATION).read_text())
    assert cal["tasks"]["Slow/0"]["status"] == "passed"
    assert s["settings"]["time_limits_s"]["min"] >= 4 * 0.6
    row = lines(tmp_path / "cal" / RESULTS)[0]
    assert row["timeout_s"] >= 2.4


def test_generator_must_return_text(tmp_path):
    ts = _slow_task()
    with pytest.raises(TypeError, match="expected str"):
        evaluate(ts, lambda t, i: None, config(tmp_path))


@pytest.mark.skipif(not hasattr(__import__("os"), "geteuid") or __import__("os").geteuid() != 0,
                    reason="the uid drop (and so the kept capability) applies as root")
def test_keeping_cap_dac_read_search_is_warned_once(monkeypatch):
    from diffucode_evals import execution, runner
    from diffucode_evals.execution import Limits

    monkeypatch.setattr(execution, "interpreter_hidden_from_others", lambda: True)
    monkeypatch.setattr(runner, "_warned_read_search", False)
    said: list[str] = []
    runner.check_sandbox(Limits(timeout_s=10), said.append)
    runner.check_sandbox(Limits(timeout_s=10), said.append)
    assert len(said) == 1 and "CAP_DAC_READ_SEARCH" in said[0]


def test_an_out_folder_with_files_of_no_run_is_not_taken_over(tmp_path):
    from diffucode_evals.runner import check_identity

    (tmp_path / "summary.json").write_text("{}")
    with pytest.raises(ResumeMismatch, match="no run.json"):
        check_identity(tmp_path, {"generator": "canonical"}, overwrite=False)
    assert (tmp_path / "summary.json").read_text() == "{}"
    check_identity(tmp_path, {"generator": "canonical"}, overwrite=True)  # --overwrite discards them
    assert (tmp_path / "run.json").is_file()
