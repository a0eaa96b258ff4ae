"""`diffucode eval`: argument handling, exit codes, and the model adapter (with a fake engine)."""

import argparse
import json
import shutil
import sys
import types
from importlib import metadata

import pytest

from diffucode_evals import cli
from diffucode_evals.data import Task, get_spec
from diffucode_evals.model_generator import ModelGenerator

from tests.benchdata import DATA


def need(name: str) -> None:
    if not (DATA / get_spec(name).filename).is_file():
        pytest.skip(f"benchmark data {get_spec(name).filename} not found under {DATA}")


def test_canonical_run_exit_0_and_summary(tmp_path, capsys):
    need("humaneval")
    out = tmp_path / "run"
    code = cli.main(["eval", "humaneval", "--generator", "canonical", "--data-dir", str(DATA),
                     "--limit", "4", "--out", str(out), "--quiet"])
    assert code == 0
    captured = capsys.readouterr()
    stdout = captured.out
    assert "pass@1 100.00%" in stdout and str(out / "summary.json") in stdout
    # --quiet: no progress (at most a warning, e.g. the one about CAP_DAC_READ_SEARCH); stdout: the result
    assert len(stdout.splitlines()) == 1
    assert all(line.startswith("warning: ") for line in captured.err.splitlines()), captured.err
    assert (out / "report.md").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_tasks"] == 4 and summary["generator"] == "canonical"
    # a rerun resumes: nothing to do, same answer
    assert cli.main(["eval", "humaneval", "--generator", "canonical", "--data-dir", str(DATA),
                     "--limit", "4", "--out", str(out), "--quiet"]) == 0
    assert len((out / "results.jsonl").read_text().splitlines()) == 4


def test_fail_under_gives_exit_1(tmp_path):
    need("humaneval")
    samples = tmp_path / "samples.jsonl"
    samples.write_text(json.dumps({"task_id": "HumanEval/0", "completion": "    return None\n"}) + "\n")
    code = cli.main(["eval", "humaneval", "--samples", str(samples), "--data-dir", str(DATA), "--tasks", "0",
                     "--out", str(tmp_path / "run"), "--quiet", "--fail-under", "50"])
    assert code == 1
    assert cli.main(["eval", "humaneval", "--generator", "canonical", "--data-dir", str(DATA), "--tasks", "0",
                     "--out", str(tmp_path / "canonical"), "--quiet", "--fail-under", "100"]) == 0


@pytest.mark.parametrize("argv, message", [
    (["eval"], "name a task set"),
    (["eval", "nosuchset"], "unknown task set"),
    (["eval", "humaneval", "--k", "1,10"], "--n-samples >= 10"),
    (["eval", "humaneval", "--k", "x"], "comma-separated"),
    (["eval", "humaneval", "--n-samples", "0"], "--n-samples"),
    (["eval", "humaneval", "--data-file", "/nonexistent/HumanEval.jsonl.gz"], "does not exist"),
    (["eval", "humaneval", "--data-file", "/"], "is a folder, not a file"),
    (["eval", "humaneval", "--fail-under", "200"], "percentage"),
    (["eval", "humaneval", "--memory-gb", "-1"], "--memory-gb"),
])
def test_usage_and_data_errors_exit_2(argv, message, capsys):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_missing_data_names_the_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.delenv("DIFFUCODE_EVAL_DATA", raising=False)
    monkeypatch.setattr("diffucode_evals.data._package_file", lambda *a: None)
    assert cli.main(["eval", "mbpp+", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "MbppPlus-OriginFmt-v0.2.0.jsonl.gz" in err and "--data-file" in err


def test_list(capsys):
    assert cli.main(["eval", "--list"]) == 0
    out = capsys.readouterr().out
    assert "humaneval-infill-span-light" in out and "mbpp+" in out


def test_register_adds_eval_to_any_subparsers():
    parser = argparse.ArgumentParser(prog="diffucode")
    sub = parser.add_subparsers(dest="command")
    cli.register(sub)
    args = parser.parse_args(["eval", "mbpp", "--n-samples", "5", "--k", "1,5", "--temperature", "0.7",
                              "--steps", "32", "--max-new-tokens", "256", "--seed", "3", "--workers", "2"])
    assert args.func is cli.run
    assert (args.taskset, args.n_samples, args.k, args.temperature, args.steps) == ("mbpp", 5, "1,5", 0.7, 32)
    assert (args.max_new_tokens, args.seed, args.workers, args.generator) == (256, 3, 2, "model")


def test_entry_point_when_installed():
    eps = [ep for ep in metadata.entry_points(group="diffucode.commands") if ep.name == "eval"]
    if not eps:
        pytest.skip('pyproject.toml does not register [project.entry-points."diffucode.commands"] eval yet')
    assert eps[0].load() is cli.register


# ---------------------------------------------------------------- the model adapter, with a fake engine


@pytest.fixture
def fake_engine(monkeypatch):
    calls = []

    class Settings:
        def __init__(self, **kw):
            self.kw = kw
            self.context = kw.get("context")

    def result(text):
        edit = types.SimpleNamespace(text=text)
        return types.SimpleNamespace(best=types.SimpleNamespace(edits=(edit,)) if text is not None else None)

    def complete(engine, source, cursor, settings):
        calls.append(("complete", source, cursor, settings.kw))
        return result("    return 1\n")

    def infill(engine, source, spans, settings):
        calls.append(("infill", source, spans, settings.kw))
        return result(None if "NOVALID" in source else "X")

    infill_mod = types.ModuleType("diffucode.infill")
    infill_mod.InfillSettings, infill_mod.complete, infill_mod.infill = Settings, complete, infill
    models_mod = types.ModuleType("diffucode.loading")
    models_mod.load_engine = lambda name, device="cpu", **opts: (
        calls.append(("load", name, device, *opts.items())) or "ENGINE")
    monkeypatch.setitem(sys.modules, "diffucode.infill", infill_mod)
    refine_mod = types.ModuleType("diffucode.refine")  # context "none" (the eval's default): the model alone
    refine_mod.infill_in_context = lambda engine, source, spans, settings, drafts_for: infill(engine, source, spans,
                                                                                              settings)
    monkeypatch.setitem(sys.modules, "diffucode.refine", refine_mod)
    monkeypatch.setitem(sys.modules, "diffucode.loading", models_mod)
    return calls


def test_model_generator_uses_the_engine_api(fake_engine):
    gen = ModelGenerator("some/model", device="cpu", steps=8, temperature=0.5, max_new_tokens=99, seed=1)
    he = Task("HumanEval/0", "complete", "def f():\n", "", "", entry_point="f")
    assert gen(he, 0) == "    return 1\n"
    assert fake_engine[0] == ("load", "some/model", "cpu")
    kind, source, cursor, kw = fake_engine[1]
    assert (kind, source, cursor) == ("complete", "def f():\n", len("def f():\n"))
    assert kw["steps"] == 8 and kw["temperature"] == 0.5 and kw["max_new_tokens"] == 99

    infill_task = Task("I/HumanEval/0/1", "infill", "a = (", "", "", entry_point="f", suffix=")\n")
    assert gen(infill_task, 0) == "X"
    kind, source, spans, _ = fake_engine[2]
    assert (kind, source, spans) == ("infill", "a = ()\n", [(5, 5)])

    mbpp = Task("Mbpp/11", "program", "Do it.", "", "", test_list=("assert g(1) == 1",))
    gen(mbpp, 0)
    kind, source, spans, _ = fake_engine[3]
    assert kind == "infill" and source == '"""\nDo it.\nassert g(1) == 1\n"""\n' and spans == [(len(source),) * 2]
    assert len([c for c in fake_engine if c[0] == "load"]) == 1  # loaded once


def test_model_generator_seeds_differ_per_sample_and_no_candidate_is_empty(fake_engine):
    gen = ModelGenerator(None, temperature=0.8)
    t = Task("HumanEval/0", "complete", "def f():\n", "", "", entry_point="f")
    gen(t, 0), gen(t, 1), gen(t, 0)
    seeds = [c[3]["seed"] for c in fake_engine if c[0] == "complete"]
    assert seeds[0] != seeds[1] and seeds[0] == seeds[2]
    assert gen.name == "embedded"
    novalid = Task("I/0", "infill", "NOVALID", "", "", entry_point="f")
    assert gen(novalid, 0) == ""


def test_load_options_reach_load_engine(fake_engine):
    gen = ModelGenerator(None, load_options={"compile": "reduce-overhead", "quantize": "int8"})
    gen(Task("HumanEval/0", "complete", "def f():\n", "", "", entry_point="f"), 0)
    assert fake_engine[0] == ("load", None, "cpu", ("compile", "reduce-overhead"), ("quantize", "int8"))
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["eval", "humaneval", "--compile", "reduce-overhead"])
    assert args.compile == "reduce-overhead" and args.quantize == "none"
    with pytest.raises(SystemExit):
        parser.parse_args(["eval", "humaneval", "--compile", "fastest"])


def test_candidates_is_an_eval_knob():
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    assert parser.parse_args(["eval", "single-line", "--candidates", "4"]).candidates == 4
    assert ModelGenerator(None, candidates=4).knobs == {"candidates": 4}


def test_model_generator_rejects_unknown_knobs():
    with pytest.raises(TypeError):
        ModelGenerator(None, nonsense=1)


@pytest.mark.slow
def test_model_run_end_to_end_with_a_tiny_random_model(tmp_path):
    pytest.importorskip("torch")
    testing = pytest.importorskip("diffucode.testing")
    need("humaneval")
    model = testing.random_model(tmp_path / "model", seed=0)
    out = tmp_path / "run"
    code = cli.main(["eval", "humaneval", "--model", str(model), "--data-dir", str(DATA), "--limit", "5",
                     "--max-new-tokens", "16", "--steps", "4", "--out", str(out), "--quiet"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples"] == 5 and summary["model"] == str(model) and summary["complete"]
    report = (out / "report.md").read_text()
    assert str(model) in report and summary["data"][0]["sha256"] in report and "| pass@1 |" in report
    assert len((out / "samples.jsonl").read_text().splitlines()) == 5


def test_several_greedy_samples_are_warned_about(tmp_path, capsys):
    pytest.importorskip("torch")
    testing = pytest.importorskip("diffucode.testing")
    need("humaneval")
    model = testing.random_model(tmp_path / "model", seed=0)
    base = ["eval", "humaneval", "--model", str(model), "--data-dir", str(DATA), "--limit", "1", "--n-samples", "2",
            "--max-new-tokens", "4", "--steps", "2", "--quiet"]
    assert cli.main([*base, "--out", str(tmp_path / "greedy")]) == 0  # temperature left at its default, 0
    assert "gives identical samples" in capsys.readouterr().err
    assert cli.main([*base, "--temperature", "0.8", "--out", str(tmp_path / "sampled")]) == 0
    assert "identical samples" not in capsys.readouterr().err


def test_a_bad_model_leaves_no_run_folder_and_the_retry_is_a_new_run(tmp_path, capsys, tiny_model_dir):
    # The model is loaded on first use, after the run folder exists: a --model that is not there is refused
    # before the folder is made, and one that fails to load undoes what the failed first call wrote, so
    # the retry with the right --model into the same --out is not refused as "a different run".
    pytest.importorskip("torch")
    need("humaneval")
    broken = shutil.copytree(tiny_model_dir, tmp_path / "broken")
    config = json.loads((broken / "config.json").read_text())
    config["model"]["n_layers"] += 1  # a config.json the weights do not fit: found only when loading
    (broken / "config.json").write_text(json.dumps(config))
    out, empty = tmp_path / "run", tmp_path / "empty"
    empty.mkdir()
    common = ["eval", "humaneval", "--data-dir", str(DATA), "--limit", "1", "--max-new-tokens", "4", "--steps", "2",
              "--quiet"]
    for model, folder, message in ((tmp_path / "nope", out, "model folder not found"),
                                   (tmp_path, out, "no config.json: not a model folder"),
                                   (broken, out, "do not fit the config"), (broken, empty, "do not fit the config")):
        assert cli.main(common + ["--model", str(model), "--out", str(folder)]) == 2
        errors = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("warning: ")]
        assert len(errors) == 1 and errors[0].startswith("error: ") and message in errors[0], errors
        assert not out.exists() and not any(empty.iterdir())
    assert cli.main(common + ["--model", str(tiny_model_dir), "--out", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["model"] == str(tiny_model_dir)


FAKE_BROKEN_CHILD = '''
import json, os, sys
fd = int(sys.argv[1])
with os.fdopen(fd, "rb") as f:
    cfg = json.loads(f.read())
os.write(cfg["status_fd"],
         (cfg["sentinel"] + " sandbox could not drop to uid 1234: Operation not permitted\\n").encode())
os._exit(3)
'''


@pytest.mark.parametrize("when", ["always", "after_the_check"])
def test_a_broken_sandbox_stops_the_run_and_records_nothing(tmp_path, monkeypatch, capsys, when):
    # A sandbox that cannot set itself up (here: a child that reports a failed uid drop) says nothing about
    # the programs: the run exits 2, and no such result lands in results.jsonl or calibration.json.
    need("humaneval")
    from diffucode_evals import execution, runner

    broken = tmp_path / "broken_child.py"
    broken.write_text(FAKE_BROKEN_CHILD)
    if when == "always":
        monkeypatch.setattr(execution, "_CHILD", str(broken))
    else:  # the start-up check passes, the task programs hit the broken sandbox
        real = execution.run_program

        def flaky(source, limits=execution.Limits(), **kw):
            if source == runner.SANDBOX_CHECK:
                return real(source, limits, **kw)
            monkeypatch.setattr(execution, "_CHILD", str(broken))  # broken from now on
            return real(source, limits, **kw)

        monkeypatch.setattr(runner, "run_program", flaky)
    out = tmp_path / "run"
    for calibrate in ("off", "on"):
        code = cli.main(["eval", "humaneval", "--generator", "canonical", "--data-dir", str(DATA), "--limit", "2",
                         "--out", str(out), "--quiet", "--calibrate", calibrate])
        assert code == 2
        err = capsys.readouterr().err
        assert "sandbox" in err and "could not drop to uid 1234" in err, err
        results = out / "results.jsonl"
        assert not results.exists() or results.read_text() == ""
        assert not (out / "calibration.json").exists()
        assert not (out / "summary.json").exists()


def test_public_checkpoint_options_and_presets_reach_the_engine(fake_engine):
    from diffucode.families import FAMILY_PRESETS

    gen = ModelGenerator(None, load_options={"dtype": "bf16", "family": "dream", "trust_remote_code": True},
                         preset="llada", steps=8)
    gen(Task("HumanEval/0", "complete", "def f():\n", "", "", entry_point="f"), 0)
    assert fake_engine[0] == ("load", None, "cpu", ("dtype", "bf16"), ("family", "dream"), ("trust_remote_code", True))
    kw = fake_engine[1][3]
    assert kw["threshold"] is None and kw["cache_refresh"] is None  # the authors decode without them
    assert kw["steps"] == 8  # a knob given explicitly wins over the preset
    assert all(kw[k] == v for k, v in FAMILY_PRESETS["llada"].items() if k != "steps")
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["eval", "humaneval", "--dtype", "bf16", "--family", "llada", "--trust-remote-code",
                              "--preset", "auto"])
    assert (args.dtype, args.family, args.trust_remote_code, args.preset) == ("bf16", "llada", True, "auto")
