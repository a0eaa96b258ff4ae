"""Never lose the user's code: destructive results are refused (guard.py) in the infill API, the CLI
and the language server; malformed model folders are one-line errors; `diffucode models` lists any
folder. Each test here fails without its fix."""

import json
import shutil

import pytest

from diffucode import checkpoint, cli, guard, infill
from diffucode.errors import CheckpointError
from diffucode.infill import Candidate, Edit, InfillSettings
from diffucode.testing import sample_tokenizer
from tests.scripted import scripted_engine
from tests.test_cli import SRC, run, use_script, write

BODY = SRC.index("    y = x + 1\n"), SRC.index("\nprint")  # lines 4-5: the function's body
LINE4 = SRC.index("    y = x + 1\n"), SRC.index("    return y")  # deleting it leaves valid code


# -- the rules ----------------------------------------------------------------------------------------------
def test_a_blank_fill_of_code_is_refused_an_empty_insert_is_not():
    s, e = BODY
    assert guard.refusal("fill", SRC, s, e, "") == (
        f"{guard.REFUSED}the model filled lines 4-5 with nothing, which would delete them")
    assert guard.refusal("fill", SRC, s, e, "  \n") is not None
    assert guard.refusal("fill", SRC, s, s, "") is None  # nothing was there: nothing is lost
    assert guard.refusal("fill", SRC, s, e, "    return x\n") is None
    blank = SRC.index("\n\ndef") + 1
    assert guard.refusal("fill", SRC, blank, blank + 1, "") is None  # a blank line held no code


def test_a_rewrite_keeps_the_spans_line_count():
    s, e = BODY
    assert "line break(s) instead of 2" in guard.refusal("rewrite", SRC, s, e, "    self = __p(p)\n")
    assert guard.refusal("rewrite", SRC, s, e, "    y = x + 2\n    return y\n") is None


def test_screen_keeps_the_best_safe_candidate_first():
    s, e = BODY
    empty = Candidate((Edit(s, e, ""),), score=-0.1, valid=True)
    code = Candidate((Edit(s, e, "    return x\n"),), score=-2.0, valid=True)
    broken = Candidate((Edit(s, e, "    return (\n"),), score=-0.5, valid=False, reason="syntax error")
    out = guard.screen("fill", SRC, [empty, code, broken], allow_delete=False)
    assert out[0] == code and not out[1].valid and out[1].reason.startswith(guard.REFUSED)
    assert guard.refused_reason(out) is None  # a safe candidate is left
    only = guard.screen("fill", SRC, [empty, broken], allow_delete=False)
    assert guard.refused_reason(only).startswith(guard.REFUSED)
    assert guard.screen("fill", SRC, [empty, code], allow_delete=True)[0] == empty


def test_the_infill_api_refuses_an_empty_fill_unless_allowed():
    engine = scripted_engine(sample_tokenizer(512), "")  # writes nothing: pads only
    res = infill.infill(engine, SRC, [LINE4], InfillSettings(max_new_tokens=8))
    assert res.best is None and res.refused.startswith(guard.REFUSED) and res.candidates
    ok = infill.infill(engine, SRC, [LINE4], InfillSettings(max_new_tokens=8, allow_delete=True))
    assert ok.best is not None and ok.best.edits[0].text == "" and ok.refused is None


# -- the CLI ------------------------------------------------------------------------------------------------
def test_cli_empty_fill_exits_1_and_writes_nothing(tmp_path, monkeypatch, capsysbinary):
    use_script(monkeypatch, "")
    p = write(tmp_path, SRC)
    code, out, err = run(capsysbinary, "infill", f"{p}:4", "--in-place")
    assert code == 1 and p.read_text() == SRC and out == ""
    assert err.count("\n") == 1 and "refused: the model filled line 4 with nothing" in err and "--allow-delete" in err
    code, out, _ = run(capsysbinary, "infill", f"{p}:4", "--json")
    doc = json.loads(out)
    assert code == 1 and doc["valid"] is False and doc["refused"].startswith(guard.REFUSED)
    code, _, _ = run(capsysbinary, "infill", f"{p}:4", "--in-place", "--allow-delete", "--quiet")
    assert code == 0 and p.read_text() == SRC.replace("    y = x + 1\n", "")


def test_cli_rewrite_that_drops_a_line_is_refused(tmp_path, monkeypatch, capsysbinary):
    tok = sample_tokenizer(512)
    # a rewrite whose repair leaves one line: the scripted model writes one line over the two
    monkeypatch.setattr(infill, "rewrite", lambda engine, source, span, settings, **kw: infill.finish(
        "rewrite", source, [Candidate((Edit(*span, "    self = __p(p)\n"),), -0.1, True, "repaired (syntax)")],
        settings, forwards=1, t0=0.0, hole_tokens=(4,)))
    monkeypatch.setattr(cli, "_load", lambda args: scripted_engine(tok, "x"))
    p = write(tmp_path, SRC)
    code, out, err = run(capsysbinary, "rewrite", f"{p}:4-5", "--diff")
    assert code == 1 and out == "" and "lines would be dropped or merged" in err


def test_cli_snap_that_grows_far_past_the_selection_is_refused(tmp_path, monkeypatch, capsysbinary):
    use_script(monkeypatch, "    y = 1\n")
    text = ("def f():\n    for i in range(20):\n" + "".join(f"        x{i} = {i}\n" for i in range(20))
            + "    return x0\n")
    p = write(tmp_path, text)
    code, out, err = run(capsysbinary, "infill", f"{p}:2-4", "--snap", "--in-place")  # a loop's header + 2 lines
    assert code == 2 and "select the range to regenerate" in err and "lines 2-22" in err
    assert p.read_text() == text


# -- malformed model folders --------------------------------------------------------------------------------
@pytest.mark.parametrize("edit, says", [
    (lambda c: [1, 2, 3], "must hold a JSON object"),
    (lambda c: {**c, "model": {**c["model"], "n_layers": "four"}}, "n_layers must be a positive number"),
    (lambda c: {**c, "model": {**c["model"], "d_model": -64}}, "d_model must be a positive number"),
    (lambda c: {**c, "model": [64]}, "expected an object of model settings"),
    (lambda c: {**c, "model": {**c["model"], "tie_embeddings": "yes"}}, "tie_embeddings must be true or false"),
])
def test_malformed_config_is_one_line_exit_2(tmp_path, tiny_model_dir, capsysbinary, edit, says):
    m = tmp_path / "m"
    shutil.copytree(tiny_model_dir, m)
    cfg = json.loads((m / "config.json").read_text())
    (m / "config.json").write_text(json.dumps(edit(cfg)))
    with pytest.raises(CheckpointError, match=says):
        checkpoint.load(m)
    p = write(tmp_path, SRC)
    code, out, err = run(capsysbinary, "infill", f"{p}:4-5", "--model", m)
    assert code == 2 and out == "" and err.count("\n") == 1 and says in err


def test_models_lists_a_transformers_folder_with_dtype(tmp_path, monkeypatch, capsysbinary):
    hf = tmp_path / "models" / "qwen"
    hf.mkdir(parents=True)
    (hf / "config.json").write_text(json.dumps({"model_type": "qwen2", "dtype": "bfloat16", "hidden_size": 896,
                                                "num_hidden_layers": 24, "max_position_embeddings": 32768}))
    (tmp_path / "models" / "broken").mkdir()
    (tmp_path / "models" / "broken" / "config.json").write_text("[1, 2]")
    monkeypatch.setenv("DIFFUCODE_MODELS", str(tmp_path / "models"))
    code, out, _ = run(capsysbinary, "models")
    assert code == 0
    line = next(x for x in out.splitlines() if x.endswith(str(hf)))
    assert "bfloat16" in line and "d=896" in line and "layers=24" in line and "context=32768" in line
    assert "unreadable: " in next(x for x in out.splitlines() if "broken" in x)


def test_eval_with_a_malformed_model_exits_2_and_leaves_no_run(tmp_path, tiny_model_dir, capsys):
    m = tmp_path / "m"
    shutil.copytree(tiny_model_dir, m)
    (m / "config.json").write_text("[1, 2, 3]")
    data = tmp_path / "HumanEval.jsonl"
    data.write_text(json.dumps({"task_id": "HumanEval/0", "prompt": "def f():\n",
                                "canonical_solution": "    return 1\n", "test": "def check(c):\n    assert c() == 1\n",
                                "entry_point": "f"}) + "\n")
    code = cli.main(["eval", "humaneval", "--limit", "1", "--model", str(m), "--data-file", str(data), "--out",
                     str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "must hold a JSON object" in err and not (tmp_path / "run").exists()


def test_exact_is_the_same_plain_flag_in_infill_and_eval():
    p = cli.build_parser()
    assert p.parse_args(["infill", "f.py:1", "--exact"]).exact is True
    assert p.parse_args(["eval", "humaneval", "--exact"]).exact is True
    assert p.parse_args(["eval", "humaneval"]).exact is None
