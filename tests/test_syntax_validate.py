"""validate_splice / repair_splice: known-bad splices rejected, known-good accepted (CPU, fast)."""

from __future__ import annotations

import pytest

from diffucode.errors import SpanError
from diffucode.syntax import Validation, available_languages, repair_splice, validate_splice

SRC = '''import os


class A:
    def g(self, x):
        y = x + 1
        return y

    def h(self):
        for i in range(3):
            if i:
                break
        return 0


def f(a):
    total = a
    return total
'''


def splice(old: str, new: str, text: str = SRC, language: str | None = "python") -> Validation:
    start = text.index(old)
    return validate_splice(text, start, start + len(old), new, language=language)


@pytest.mark.parametrize(
    "old, new",
    [
        ("y = x + 1", "y = x * 2"),
        ("        y = x + 1\n", "        y = x + 1\n        z = 2\n"),
        ("        y = x + 1\n", "        try:\n            y = 1\n        except E:\n            pass\n"),
        ("                break\n", "                continue\n"),
        ("                break\n", "                return 5\n"),
        ("    return total\n", "    return total\n    x = 1\n"),
        ("        return 0\n", "        return 0\n    def k(self):\n        pass\n"),
        ("        return 0\n", "        return 0\nx = 1\n"),  # legal: ends the class
        ("def f(a):", "async def f(a):"),
        ("import os\n", ""),  # deleting a statement
    ],
)
def test_good_splices_accepted(old, new):
    verdict = splice(old, new)
    assert verdict.ok, verdict.reason
    assert verdict.errors_after <= verdict.errors_before


@pytest.mark.parametrize(
    "old, new, why",
    [
        ("def g(self, x):", "def g(:", "syntax errors rise"),
        ("y = x + 1", "y = (x + 1", "syntax errors rise"),
        ("        y = x + 1\n", "        s = 'abc\n", "syntax errors rise"),  # unterminated string
        ("        y = x + 1\n", "        try:\n            y = 1\n", "expected 'except' or 'finally'"),
        ("        y = x + 1\n", "    y = x + 1\n", "does not compile"),  # a dedent that breaks the block
        ("        y = x + 1\n", "        y = x + 1\n      z = 2\n", "unindent does not match"),
        ("                break\n", "            break\n", "expected an indented block"),
        ("    return total\n", "return total\n", "'return' outside function"),
        ("    total = a\n", "    total = await a\n", "'await' outside async function"),
        ("    return total\n", '    return """never closed\n', "syntax errors rise"),
    ],
)
def test_bad_splices_rejected(old, new, why):
    verdict = splice(old, new)
    assert not verdict.ok
    assert why in verdict.reason
    assert "\n" not in verdict.reason


def test_compile_messages_use_file_lines():
    verdict = splice("                break\n", "        break\n")
    assert "on line 11" in verdict.reason  # the `if i:` of the file, not of the wrapped unit
    assert verdict.reason.endswith("near line 12")


def test_insertions_at_line_starts_and_blank_lines():
    text = "def f():\n    return 1\n    \ndef g():\n    pass\n"
    cursor = text.index("    \ndef g") + 4  # on the blank line, indented like f's body
    assert validate_splice(text, cursor, cursor, "x = 2").ok  # continues f
    assert not validate_splice(text, cursor, cursor, "x = (2").ok
    line = text.index("    \ndef g")
    assert validate_splice(text, line, line + 5, "y = 3\n").ok  # a new top-level statement
    assert not validate_splice(text, line, line + 5, "      y = 3\n").ok  # unexpected indent
    body = "class A:\n    def f(self):\n        return 1\n\n    def g(self):\n        return 2\n"
    gap = body.index("\n\n    def g") + 1
    assert validate_splice(body, gap, gap, "    def h(self):\n        return 3\n").ok
    assert not validate_splice(body, gap, gap, "  def h(self):\n        return 3\n").ok


def test_the_missing_body_of_a_block_header_is_judged_with_the_header():
    """The hole is the only line of an `if` body (HumanEval/0's single-line task): the code around it does
    not compile without the line, and a line that completes it must not be refused for that."""
    text = "def f(xs, t):\n    for x in xs:\n        if x < t:\n\n    return False\n"
    at = text.index("\n\n    return") + 1
    for good in ("            return True\n", "            continue\n"):
        assert validate_splice(text, at, at, good).ok, good
    assert not validate_splice(text, at, at, "            return (True\n").ok
    assert not validate_splice(text, at, at, "        continue\n").ok  # the `if` is left without a body


def test_candidate_without_newline_glues_onto_the_next_line():
    start, end = SRC.index("        y = x + 1\n"), SRC.index("        return y\n")
    assert validate_splice(SRC, start, end, "        y = x + 2\n").ok
    assert not validate_splice(SRC, start, end, "        y = x + 2").ok  # `y = x + 2        return y`
    assert not validate_splice(SRC, end, end, "        z = 1").ok
    assert validate_splice(SRC, end, end, "        z = 1\n").ok


def test_nonlocal_escalates_to_the_enclosing_function():
    text = "def outer():\n    x = 1\n    def inner():\n        nonlocal x\n        x = 2\n    return inner\n"
    start = text.index("        x = 2")
    end = text.index("\n", start) + 1
    assert validate_splice(text, start, end, "        x = 3\n").ok
    assert not validate_splice(text, start, end, "        x = (3\n").ok


def test_unit_that_did_not_compile_before_does_not_fail_every_candidate():
    text = "print 'python 2'\nx = 1\n"  # tree-sitter-python accepts print statements; compile() does not
    start = text.index("1")
    verdict = validate_splice(text, start, start + 1, "2")
    assert verdict.ok
    assert "did not compile before" in verdict.reason or verdict.reason == ""
    broken = "def f(:\n    pass\n\ndef g():\n    return 1\n"
    start = broken.index("return 1")
    assert validate_splice(broken, start, start + 8, "return 2").ok
    assert not validate_splice(broken, start, start + 8, "return (2").ok


def test_unicode_crlf_tabs_and_empty():
    text = 'def grüße(名前):\r\n    msg = "héllo 🎉" + 名前\r\n    return msg\r\n'
    start = text.index("msg =")
    end = text.index("\r\n    return")
    assert validate_splice(text, start, end, 'msg = "🎉" * 3').ok
    assert not validate_splice(text, start, end, 'msg = ("🎉" * 3').ok
    tabs = "if x:\n\ty = 1\n\tz = 2\n"
    assert validate_splice(tabs, tabs.index("\tz"), len(tabs), "\tz = 3\n").ok
    assert not validate_splice(tabs, tabs.index("\tz"), len(tabs), "    z = 2\n").ok
    assert validate_splice("", 0, 0, "x = 1\n").ok
    assert not validate_splice("", 0, 0, "x = (1\n").ok
    assert not validate_splice("", 0, 0, "  x = 1\n").ok


def test_decorators_and_unknown_languages():
    text = "@dec\ndef f():\n    return 1\n"
    assert not validate_splice(text, 0, 4, "@dec(").ok
    assert validate_splice(text, 0, 4, "@other").ok
    assert validate_splice("whatever", 0, 3, "(((", language="cobol") == Validation(True, "no grammar")
    assert validate_splice("whatever", 0, 3, "(((", language=None) == Validation(True, "no grammar")


@pytest.mark.parametrize(
    "language, text, old, good, bad",
    [
        ("javascript", "function f(x) {\n  const y = x + 1;\n  return y;\n}\n", "x + 1", "x * 2", "(x * 2"),
        ("typescript", "function f(x: number) {\n  return x + 1;\n}\n", "x + 1", "x * 2", "x *"),
        ("go", "package main\n\nfunc f(x int) int {\n\treturn x + 1\n}\n", "x + 1", "x * 2", "x * (2"),
        ("rust", "fn f(x: i32) -> i32 {\n    x + 1\n}\n", "x + 1", "x * 2", "x * (2"),
        ("java", "class A {\n  int f(int x) {\n    return x + 1;\n  }\n}\n", "x + 1", "x * 2", "x * (2"),
        ("c", "int f(int x) {\n  return x + 1;\n}\n", "x + 1", "x * 2", "x * (2"),
        ("cpp", "int f(int x) {\n  return x + 1;\n}\n", "x + 1", "x * 2", "x * (2"),
    ],
)
def test_other_languages(language, text, old, good, bad):
    if language not in available_languages():
        pytest.skip(f"grammar for {language} not installed")
    assert splice(old, good, text, language).ok
    verdict = splice(old, bad, text, language)
    assert not verdict.ok and verdict.errors_after > verdict.errors_before


@pytest.mark.parametrize("start, end", [(-1, 0), (5, 2), (0, len(SRC) + 1)])
def test_bad_ranges_raise(start, end):
    with pytest.raises(SpanError):
        validate_splice(SRC, start, end, "x")
    with pytest.raises(SpanError):
        repair_splice(SRC, start, end, "x")


# -- repair -------------------------------------------------------------------------------------------

BODY = "def f(x):\n    y = x + 1\n    return y\n"
LINE = (BODY.index("    y = x"), BODY.index("    return"))


@pytest.mark.parametrize(
    "new, repaired",
    [
        ("    y = x + 2\n    z = (y\n", "    y = x + 2\n"),  # (a) longest line prefix
        ("    y = x + 2 )", "    y = x + 2\n"),  # (a) token prefix, line end restored
        ("y = x + 2\nz = y\n", "    y = x + 2\n    z = y\n"),  # (b) re-indented
        ("        y = x + 2\n        z = y\n", "    y = x + 2\n    z = y\n"),  # (b) dedented
        (")))", None),
    ],
)
def test_repair_splice(new, repaired):
    assert repair_splice(BODY, *LINE, new) == repaired
    if repaired is not None:
        assert validate_splice(BODY, *LINE, repaired).ok


def test_a_repaired_insertion_of_new_lines_keeps_its_line_end():
    """An empty span at the start of a line inserts lines above it: a token cut must not join the line below
    (`    c =` cut to `    c` and glued to `    return y` would read `    c    return y`)."""
    at = BODY.index("    return")
    assert repair_splice(BODY, at, at, "    z = y +") == "    z = y\n"
    crlf = BODY.replace("\n", "\r\n")
    at = crlf.index("    return")
    assert repair_splice(crlf, at, at, "    z = y +") == "    z = y\r\n"
    assert repair_splice("x = 1\r\ny = 2\r\n", 0, 0, "z = 3 +\r\n") == "z = 3\r\n"  # no line above: the file's
    end = len(BODY)  # at the end of the file there is no line below to keep apart
    assert repair_splice(BODY, end, end, "z = 1 +").rstrip() == "z = 1"


def test_repair_expression_and_unknown_language():
    start = BODY.index("x + 1")
    assert repair_splice(BODY, start, start + 5, "x + 1) * (2") == "x + 1"
    assert repair_splice("abc", 0, 1, "x", language="cobol") is None
    cursor = BODY.index("    return") + 4  # inside the indentation of `return y`: nothing sensible fits
    assert repair_splice(BODY, cursor, cursor, "(((") is None
