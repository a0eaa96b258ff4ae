r'''Prompt formats as the field uses them, and the sanitizer that cleans a raw completion.

Formats (docs/evals.md, "Prompts"):
- HumanEval / HumanEval+: the task's ``prompt`` (imports, signature, docstring); the model continues it.
- HumanEval-Infilling: ``prompt`` before the hole and ``suffix`` after it; the model fills the hole.
- MBPP, ``bigcode`` style (bigcode-evaluation-harness, and the prompt field of evalplus MBPP+):
  ``'"""\n{text}\n{test_list[0]}\n"""\n'``; the model writes the whole solution after it.
- MBPP, ``3shot`` style (Austin et al. 2021; google-research mbpp/README.md): tasks 2, 3 and 4 as
  examples, each ``You are an expert Python programmer, and here is your task: {text} Your code should
  pass these tests:\n\n{tests}\n[BEGIN]\n{code}\n[DONE]``, then the task itself up to ``[BEGIN]\n``.

Sanitizing: cut at the first stop sequence, then, if the result does not compile, keep the longest
prefix (whole lines) that does. The compile() fallback sits behind ``longest_parseable_prefix``, the
seam where diffucode/syntax.py (tree-sitter) can plug in later.
'''

from __future__ import annotations

import warnings
from typing import Iterable, Literal, Sequence

from .data import Task

PromptStyle = Literal["bigcode", "3shot"]
PROMPT_STYLES: tuple[str, ...] = ("bigcode", "3shot")

# evalplus's stop list for code completion (codegen/sanitize): anything at column 0 that starts a new
# top-level statement ends the function body.
COMPLETION_STOPS: tuple[str, ...] = (
    "\ndef ", "\nclass ", "\nimport ", "\nfrom ", "\nassert ", "\nif __name__", "\nprint(",
)
# MBPP completions are whole programs (defs and imports are the answer), so only test/driver code stops.
PROGRAM_STOPS: tuple[str, ...] = ("[DONE]", "\nassert ", "\nif __name__", "\nprint(", '\n"""', "\n```")

FEWSHOT_IDS = (2, 3, 4)


def _fewshot_block(task: Task) -> str:
    tests = "\n".join(task.test_list)
    return (f"You are an expert Python programmer, and here is your task: {task.prompt} "
            f"Your code should pass these tests:\n\n{tests}\n")


def mbpp_bigcode_prompt(task: Task) -> str:
    return f'"""\n{task.prompt}\n{task.test_list[0]}\n"""\n'


def mbpp_fewshot_prompt(task: Task, examples: Sequence[Task]) -> str:
    if len(examples) != len(FEWSHOT_IDS):
        raise ValueError("the 3-shot MBPP prompt needs tasks 2, 3 and 4 from the MBPP data")
    shots = [
        _fewshot_block(ex) + "[BEGIN]\n" + normalize_newlines(ex.canonical_solution).strip("\n") + "\n[DONE]\n"
        for ex in examples
    ]
    return "\n".join(shots) + "\n" + _fewshot_block(task) + "[BEGIN]\n"


def build_prompt(task: Task, *, style: PromptStyle = "bigcode", fewshot: Sequence[Task] = ()) -> str:
    """The text a model continues (for infill tasks: the text before the hole)."""
    if task.kind in ("complete", "infill"):
        return task.prompt
    if style == "bigcode":
        return mbpp_bigcode_prompt(task)
    if style == "3shot":
        return mbpp_fewshot_prompt(task, fewshot)
    raise ValueError(f"unknown prompt style {style!r}; choose one of {PROMPT_STYLES}")


def normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


# --------------------------------------------------------------------------------------------------
# Sanitizing


def truncate_at_stops(text: str, stops: Iterable[str], *, at_line_start: bool = True) -> str:
    """Cut ``text`` at the earliest stop sequence. With ``at_line_start`` the text is taken to start a
    line, so a stop like ``"\\ndef "`` also matches ``"def "`` at offset 0."""
    probe = ("\n" + text) if at_line_start else text
    shift = 1 if at_line_start else 0
    cut = len(text)
    for stop in stops:
        i = probe.find(stop)
        if i != -1:
            cut = min(cut, max(0, i - shift))
    return text[:cut]


def _compiles(source: str) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SyntaxWarning for odd escapes is not our concern here
            compile(source, "<candidate>", "exec")
        return True
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return False


def longest_parseable_prefix(text: str, *, context: str = "") -> str:
    """The longest prefix of ``text``, in whole lines, such that ``context + prefix`` compiles.

    The seam for diffucode/syntax.py: a tree-sitter version can replace this function without changing
    its callers. Returns ``text`` unchanged when no prefix compiles (the error then shows up at run time).
    """
    if _compiles(context + text):
        return text
    lines = text.splitlines(keepends=True)
    for end in range(len(lines) - 1, -1, -1):
        prefix = "".join(lines[:end])
        if _compiles(context + prefix):
            return prefix
    return text


def strip_fences(text: str) -> str:
    """Drop a leading ```python fence line and a leading [BEGIN] marker."""
    t = text.lstrip("\n")
    for opener in ("```python\n", "```py\n", "```\n", "[BEGIN]\n", "[BEGIN]"):
        if t.startswith(opener):
            return t[len(opener):]
    return text


def sanitize(task: Task, completion: str) -> str:
    """What gets executed for a raw model ``completion`` of ``task``.

    complete: cut at COMPLETION_STOPS, then the longest prefix that compiles after the prompt.
    program: strip fences/[BEGIN], cut at PROGRAM_STOPS, then the longest prefix that compiles.
    infill: unchanged (the hole has a fixed place; the engine validates the splice).
    """
    completion = normalize_newlines(completion)
    if task.kind == "infill":
        return completion
    if task.kind == "complete":
        text = truncate_at_stops(completion, COMPLETION_STOPS)
        return longest_parseable_prefix(text, context=task.prompt)
    text = truncate_at_stops(strip_fences(completion), PROGRAM_STOPS)
    return longest_parseable_prefix(text)


__all__ = [
    "COMPLETION_STOPS",
    "FEWSHOT_IDS",
    "PROGRAM_STOPS",
    "PROMPT_STYLES",
    "PromptStyle",
    "build_prompt",
    "longest_parseable_prefix",
    "mbpp_bigcode_prompt",
    "mbpp_fewshot_prompt",
    "normalize_newlines",
    "sanitize",
    "strip_fences",
    "truncate_at_stops",
]
