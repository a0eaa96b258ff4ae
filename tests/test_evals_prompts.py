"""Prompt formats and the sanitizer."""

import pytest

from diffucode_evals.data import Task
from diffucode_evals.prompts import (
    COMPLETION_STOPS,
    build_prompt,
    longest_parseable_prefix,
    mbpp_bigcode_prompt,
    mbpp_fewshot_prompt,
    sanitize,
    truncate_at_stops,
)

from tests.benchdata import load_or_skip

HE = Task("HumanEval/x", "complete", "def add(a, b):\n    \"\"\"Add.\"\"\"\n", "    return a + b\n",
          "def check(c):\n    assert c(1, 2) == 3\n", entry_point="add")


def mbpp_task(i: int, text: str, code: str) -> Task:
    tests = (f"assert f{i}(1) == 1", f"assert f{i}(2) == 2")
    return Task(f"Mbpp/{i}", "program", text, code, "\n".join(tests), test_list=tests)


def test_mbpp_bigcode_prompt_format():
    t = mbpp_task(7, "Write a function.", "def f7(x):\n    return x\n")
    assert mbpp_bigcode_prompt(t) == '"""\nWrite a function.\nassert f7(1) == 1\n"""\n'
    assert build_prompt(t, style="bigcode") == mbpp_bigcode_prompt(t)


def test_mbpp_fewshot_prompt_format():
    shots = [mbpp_task(i, f"Task {i}.", f"def f{i}(x):\r\n    return x") for i in (2, 3, 4)]
    t = mbpp_task(11, "Task 11.", "")
    p = mbpp_fewshot_prompt(t, shots)
    head = ("You are an expert Python programmer, and here is your task: Task 2. "
            "Your code should pass these tests:\n\nassert f2(1) == 1\nassert f2(2) == 2\n"
            "[BEGIN]\ndef f2(x):\n    return x\n[DONE]\n")
    assert p.startswith(head)
    assert p.count("[DONE]") == 3 and "\r" not in p
    assert p.endswith("Task 11. Your code should pass these tests:\n\n"
                      "assert f11(1) == 1\nassert f11(2) == 2\n[BEGIN]\n")
    with pytest.raises(ValueError):
        mbpp_fewshot_prompt(t, shots[:2])


def test_fewshot_examples_are_tasks_2_3_4_of_the_real_data():
    ts = load_or_skip("mbpp")
    assert [t.task_id for t in ts.fewshot] == ["Mbpp/2", "Mbpp/3", "Mbpp/4"]
    p = build_prompt(ts.tasks[0], style="3shot", fewshot=ts.fewshot)
    assert "similar elements" in p and p.endswith("[BEGIN]\n") and ts.tasks[0].prompt in p


def test_humaneval_prompt_is_the_task_prompt():
    assert build_prompt(HE) == HE.prompt


def test_truncate_at_stops():
    body = "    return a + b\n"
    assert truncate_at_stops(body + "\ndef other():\n    pass\n", COMPLETION_STOPS) == body
    assert truncate_at_stops(body + "\nprint(add(1, 2))\n", COMPLETION_STOPS) == body
    # the newline that starts a stop sequence goes with it
    assert truncate_at_stops(body + 'if __name__ == "__main__":\n    pass\n', COMPLETION_STOPS) == body[:-1]
    assert truncate_at_stops("def other():\n    pass\n", COMPLETION_STOPS) == ""  # a stop at offset 0
    nested = "    def helper(x):\n        return x\n    return helper(a) + b\n"
    assert truncate_at_stops(nested, COMPLETION_STOPS) == nested  # indented defs are part of the body


def test_longest_parseable_prefix():
    assert longest_parseable_prefix("x = 1\ny = 2\n") == "x = 1\ny = 2\n"
    assert longest_parseable_prefix("x = 1\ny = (2,\n") == "x = 1\n"
    ctx = "def f(a):\n"
    assert longest_parseable_prefix("    return a\n    if a >\n", context=ctx) == "    return a\n"
    assert longest_parseable_prefix("))) (((", context="x = [") == "))) ((("  # nothing compiles: unchanged
    assert longest_parseable_prefix("") == ""


def test_sanitize_complete_program_and_infill():
    raw = "    return a + b\n\n\ndef test():\n    assert add(1, 1) == 2\n"
    assert sanitize(HE, raw) == "    return a + b\n\n"
    assert sanitize(HE, "    return a +\n") == ""  # nothing after the prompt compiles but the empty body
    t = mbpp_task(5, "Task.", "")
    raw = "[BEGIN]\ndef f5(x):\n    return x\n[DONE]\nYou are an expert..."
    assert sanitize(t, raw) == "def f5(x):\n    return x\n"
    assert sanitize(t, "```python\ndef f5(x):\n    return x\n```\n") == "def f5(x):\n    return x"
    assert sanitize(t, "def f5(x):\n    return x\nassert f5(1) == 1\n") == "def f5(x):\n    return x"
    infill = Task("I/0", "infill", "x = (", "1)", "", suffix="\n")
    assert sanitize(infill, "1)\ndef junk(") == "1)\ndef junk("  # the hole is fixed: no cutting


def test_sanitize_keeps_every_canonical_humaneval_solution():
    ts = load_or_skip("humaneval")
    for t in ts.tasks:
        assert sanitize(t, t.canonical_solution) == t.canonical_solution, t.task_id
