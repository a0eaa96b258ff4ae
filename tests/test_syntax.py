"""Syntax layer: offsets, language registry, snap, hole_at_cursor, node_spans (CPU, fast)."""

from __future__ import annotations

import random

import pytest

from diffucode.errors import ConfigError, SpanError
from diffucode.syntax import (
    HOLE_KINDS,
    SPAN_KINDS,
    Hole,
    NodeSpan,
    Snap,
    available_languages,
    hole_at_cursor,
    language_for_path,
    node_spans,
    sample_node_span,
    snap,
)
from diffucode.syntax._text import TextIndex

PY = '''import os

# helper comment
# second line
@decorator(1)
def f(x, y=2):
    """Doc."""
    total = x + y * 3  # note
    if total > 10: return total
    a = 1; b = 2
    for i in range(3):
        total += i
        print(i)
    return total


class A:
    def g(self):
        return [1, 2,
                3]
'''

UNICODE = 'def grüße(名前):\r\n    """挨拶 🎉"""\r\n    msg = "héllo 🎉" + 名前\r\n    return msg\r\n'


def cut(text: str, result) -> str:
    return text[result.start : result.end]


def at(text: str, needle: str, offset: int = 0) -> int:
    return text.index(needle) + offset


# -- offsets ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["", "x", "plain ascii\n", UNICODE, "a🎉b\u00e9c\u4e2d\U0001f600d", "e\u0301\u200d\t\r\n", "\udc80x"],
)
def test_offsets_round_trip(text):
    index = TextIndex(text)
    assert index.data == text.encode("utf-8", "surrogatepass")
    for i in range(len(text) + 1):
        b = index.to_byte(i)
        assert b == len(text[:i].encode("utf-8", "surrogatepass"))
        assert index.to_str(b) == i


def test_byte_inside_a_character_rounds_down():
    index = TextIndex("a🎉b")  # 🎉 is 4 bytes: 1..4
    assert [index.to_str(b) for b in range(7)] == [0, 1, 1, 1, 1, 2, 3]


def test_lines_use_newline_only():
    text = "a\r\nb\x0cc\u2028d\n"
    index = TextIndex(text)
    assert index.line_start(4) == 3  # \x0c and \u2028 do not end lines
    assert index.line_end(0) == 3
    assert index.line_content_end(0) == 1  # "\r\n" is not content
    assert index.whole_lines(4, 6) == (3, 9)


# -- languages ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, language",
    [
        ("a.py", "python"), ("pkg/b.PYI", "python"), ("x.js", "javascript"), ("x.mjs", "javascript"),
        ("x.ts", "typescript"), ("x.tsx", "tsx"), ("main.go", "go"), ("lib.rs", "rust"),
        ("A.java", "java"), ("m.c", "c"), ("m.h", "c"), ("m.cpp", "cpp"), ("m.hpp", "cpp"),
        ("README", None), ("notes.txt", None), ("archive.tar.gz", None),
    ],
)
def test_language_for_path(path, language):
    assert language_for_path(path) == language


@pytest.mark.parametrize("alias, name", [("py", "python"), ("PYTHON", "python"), ("typescriptreact", "tsx"),
                                         ("javascriptreact", "javascript"), ("c++", "cpp"), ("golang", "go")])
def test_language_aliases_and_lsp_language_ids(alias, name):
    from diffucode.syntax.languages import canonical_name

    assert canonical_name(alias) == name
    assert canonical_name("cobol") is None and canonical_name(None) is None


def test_available_languages_include_python():
    languages = available_languages()
    assert "python" in languages
    assert languages == sorted(languages)


# -- snap ---------------------------------------------------------------------------------------------


def test_snap_expression_best_match():
    # "x + y" is not a node (it is x + (y * 3)): the smallest covering expression wins.
    s = snap(PY, at(PY, "x + y"), at(PY, "x + y", 5))
    assert (s.kind, cut(PY, s)) == ("expression", "x + y * 3")
    assert (s.requested_start, s.requested_end) == (at(PY, "x + y"), at(PY, "x + y", 5))
    s = snap(PY, at(PY, "y * 3"), at(PY, "y * 3", 5))
    assert (s.kind, cut(PY, s), s.start) == ("expression", "y * 3", at(PY, "y * 3"))


def test_snap_partial_identifier_grows_to_the_identifier():
    s = snap(PY, at(PY, "total = x", 1), at(PY, "total = x", 3))
    assert (s.kind, s.start, s.end) == ("expression", at(PY, "total = x"), at(PY, "total = x", 5))


def test_snap_line_aligned_selection_is_the_whole_statement_line():
    start = at(PY, "total = x")
    s = snap(PY, start, at(PY, "# note", 6))
    assert s == Snap(start - 4, at(PY, "# note", 7), "statement", start, at(PY, "# note", 6), "")
    assert cut(PY, s) == "    total = x + y * 3  # note\n"


def test_snap_statement_on_its_parents_header_line_becomes_the_parent():
    s = snap(PY, at(PY, "return total\n    a"), at(PY, "return total\n    a", 12))
    assert (s.kind, cut(PY, s)) == ("statement", "    if total > 10: return total\n")
    assert "parent" in s.note


def test_snap_semicolon_siblings_come_together():
    s = snap(PY, at(PY, "b = 2"), at(PY, "b = 2", 5))
    assert (s.kind, cut(PY, s)) == ("statements", "    a = 1; b = 2\n")


def test_snap_whole_body_is_a_block():
    s = snap(PY, at(PY, "total += i"), at(PY, "print(i)", 8))
    assert (s.kind, cut(PY, s)) == ("block", "        total += i\n        print(i)\n")


def test_snap_pulls_in_decorators_and_comments_above():
    expected_start = at(PY, "# helper")
    expected_end = at(PY, "    return total\n\n", len("    return total\n"))
    for a, b in [(at(PY, "def f"), at(PY, "def f", 3)), (at(PY, "@decorator"), at(PY, "@decorator", 4))]:
        s = snap(PY, a, b)
        assert (s.kind, s.start, s.end) == ("statement", expected_start, expected_end)
    assert cut(PY, s).startswith("# helper comment\n# second line\n@decorator(1)\ndef f(")


def test_snap_multiline_expression_and_continuation_line():
    s = snap(PY, at(PY, "2,\n"), at(PY, "3]", 1))
    assert (s.kind, cut(PY, s)) == ("expression", "[1, 2,\n                3]")
    # A selection of the continuation line alone, aligned to its line: the whole statement's lines.
    s = snap(PY, at(PY, "                3]"), at(PY, "3]\n", 3))
    assert (s.kind, cut(PY, s)) == ("statement", "        return [1, 2,\n                3]\n")


def test_snap_caret_and_blank_and_comment_fall_backs():
    s = snap(PY, at(PY, "range(3)", 2), at(PY, "range(3)", 2))  # caret: the statement on that line
    assert (s.kind, cut(PY, s)) == ("statement", "    for i in range(3):\n        total += i\n        print(i)\n")
    blank = at(PY, "\n\n# helper") + 1
    s = snap(PY, blank, blank)
    assert (s.kind, s.start, s.end) == ("lines", blank, blank + 1)
    s = snap(PY, at(PY, "# helper", 2), at(PY, "# helper", 8))
    assert (s.kind, cut(PY, s), s.note) == (
        "lines", "# helper comment\n", "selection holds no statement: snapped to whole lines")


def test_snap_unicode_crlf():
    s = snap(UNICODE, at(UNICODE, '"héllo'), at(UNICODE, "+ 名前"))
    assert (s.kind, cut(UNICODE, s), s.start, s.end) == ("expression", '"héllo 🎉"', 42, 51)
    s = snap(UNICODE, at(UNICODE, "return"), at(UNICODE, "return", 3))
    # The keyword is not a named node: its statement is, and statements snap to whole lines.
    assert (s.kind, s.start, s.end) == ("statement", 58, 74)
    assert cut(UNICODE, s) == "    return msg\r\n"
    s = snap(UNICODE, at(UNICODE, "msg ="), at(UNICODE, "\r\n    return"))
    assert (s.kind, cut(UNICODE, s)) == ("statement", '    msg = "héllo 🎉" + 名前\r\n')
    s = snap(UNICODE, at(UNICODE, '"""挨拶'), len(UNICODE))
    assert (s.kind, cut(UNICODE, s)) == ("block", UNICODE[at(UNICODE, '    """'):])


def test_snap_tabs():
    text = "if x:\n\ty = 1\n\tz = 2\n"
    s = snap(text, text.index("y"), text.index("2") + 1)
    assert (s.kind, s.start, s.end) == ("block", 6, 20)


def test_snap_nested_function_and_lambda():
    text = "def outer():\n    def inner(a):\n        return a + 1\n    key = lambda v: v * 2\n    return inner\n"
    s = snap(text, text.index("def inner"), text.index("def inner") + 3)
    assert cut(text, s) == "    def inner(a):\n        return a + 1\n"
    s = snap(text, text.index("v * 2"), text.index("v * 2") + 3)
    assert (s.kind, cut(text, s)) == ("expression", "v * 2")
    s = snap(text, text.index("lambda"), text.index("v * 2") + 2)
    assert (s.kind, cut(text, s)) == ("expression", "lambda v: v * 2")


def test_snap_region_with_errors_falls_back_to_lines():
    text = "def f(:\n    return 1\n\ndef g():\n    return 2\n"
    s = snap(text, 4, 5)
    assert (s.kind, s.start, s.end) == ("lines", 0, 8)
    assert "syntax errors" in s.note
    s = snap(text, text.index("2"), text.index("2") + 1)  # g is intact
    assert (s.kind, cut(text, s)) == ("expression", "2")


def test_snap_unknown_language_and_empty_file():
    s = snap("a b c\nd e\n", 2, 3, language="cobol")
    assert (s.kind, s.start, s.end) == ("lines", 0, 6)
    assert "cobol" in s.note
    s = snap("a b c\nd e\n", 2, 8, language=None)
    assert (s.kind, s.start, s.end) == ("lines", 0, 10)
    s = snap("", 0, 0)
    assert (s.kind, s.start, s.end) == ("lines", 0, 0)


@pytest.mark.parametrize("start, end", [(-1, 2), (3, 2), (0, 10_000), (0.5, 2)])
def test_snap_bad_ranges_raise(start, end):
    with pytest.raises(SpanError) as info:
        snap(PY, start, end)
    assert "\n" not in str(info.value)


# -- hole_at_cursor -----------------------------------------------------------------------------------


def hole(marked: str, language: str | None = "python") -> Hole:
    cursor = marked.index("|")
    return hole_at_cursor(marked.replace("|", "", 1), cursor, language=language)


@pytest.mark.parametrize(
    "marked, kind",
    [
        ('def f(x):\n    """doc"""\n    |\n', "block_body"),
        ('def f(x):\n    """doc"""\n    |', "block_body"),
        ("def f(x):\n    |\n", "block_body"),
        ('class A:\n    """Doc."""\n\n    |\n\nclass B: pass\n', "block_body"),
        ("for i in x:|", "block_body"),
        ("def f(x):\n    |\n    return 1\n", "statement"),
        ("def f(x):\n    x = 1\n    |\n", "statement"),
        ("def f():\n    return 1\n|\n", "statement"),
        ("    |return x\n", "statement"),
        ("if x:|\n    pass\n", "statement"),
        ("x = |\n", "expression"),
        ("x = |", "expression"),
        ("x = foo(|)\n", "expression"),
        ("return |\n", "expression"),
        ('d = {"a": |}\n', "expression"),
        ("foo(a,\n    |\n)\n", "expression"),
        ("for i in ran|\n", "line_rest"),
        ("x = foo()|\n", "line_rest"),
        ('s = "hel|lo"\n', "line_rest"),
        ("# TODO |\n", "line_rest"),
    ],
)
def test_hole_kinds_python(marked, kind):
    h = hole(marked)
    assert h.kind == kind
    assert h.kind in HOLE_KINDS
    assert h.max_lines == (1 if kind in ("line_rest", "expression") else None)


def test_hole_offsets():
    assert hole("x = |\n") == Hole(4, 4, "expression", 1)
    assert hole("x = compu|te(1)\n") == Hole(9, 14, "line_rest", 1)  # splits a word: rest of line
    assert hole("x = foo(a, |)  \n") == Hole(11, 11, "expression", 1)  # closers stay
    assert hole("y = 1 + 2|   \r\nz\n") == Hole(9, 12, "line_rest", 1)  # trailing blanks, not "\r"
    h = hole('def 名前():\n    """🎉"""\n    |\n')
    assert (h.start, h.kind) == (len('def 名前():\n    """🎉"""\n    '), "block_body")


@pytest.mark.parametrize(
    "marked, language, kind",
    [
        ("function f(x) {\n  |\n}\n", "javascript", "block_body"),
        ("function f(x) {\n  let y = 1;\n  |\n}\n", "javascript", "statement"),
        ("const y = |;\n", "javascript", "expression"),
        ("int main() {\n    |\n}\n", "c", "block_body"),
        ("fn main() {\n    let x = |\n}\n", "rust", "expression"),
        ("func f() int {\n\t|\n}\n", "go", "block_body"),
        ("x = |\n", None, "expression"),
        ("x = 1\n|\n", "cobol", "statement"),
        ("x = 1|\n", None, "line_rest"),
    ],
)
def test_hole_kinds_other_languages(marked, language, kind):
    if language not in (None, "cobol") and language not in available_languages():
        pytest.skip(f"grammar for {language} not installed")
    assert hole(marked, language).kind == kind


def test_hole_bad_cursor_raises():
    with pytest.raises(SpanError):
        hole_at_cursor("abc", 4)
    with pytest.raises(SpanError):
        hole_at_cursor("abc", -1)
    assert hole_at_cursor("", 0) == Hole(0, 0, "statement", None)


# -- node_spans ---------------------------------------------------------------------------------------


def spans_by_kind(text: str, **kwargs) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for span in node_spans(text, **kwargs):
        out.setdefault(span.kind, []).append(text[span.start : span.end])
    return out


SMALL = '''def f(x, y=2):
    """Doc."""
    if x > 0 and y:
        return [i * 2 for i in range(x)]
    while (y < 3):
        y += 1
    return foo(x, key=y + 1)
'''


def test_node_spans_labelled_kinds():
    got = spans_by_kind(SMALL)
    assert got["condition"] == ["x > 0 and y", "y < 3"]  # parentheses stripped
    assert got["function_body"] == [SMALL[SMALL.index("    if x") :]]  # docstring excluded
    assert got["body"] == ["        return [i * 2 for i in range(x)]\n", "        y += 1\n"]
    assert got["statement"] == [
        '    """Doc."""\n',
        "        return [i * 2 for i in range(x)]\n",
        "        y += 1\n",
        "    return foo(x, key=y + 1)\n",
    ]
    assert "foo(x, key=y + 1)" in got["expression"]
    assert "y + 1" in got["expression"]  # a keyword argument's value
    assert "key" not in got["expression"]  # ...but not its name
    assert "i" not in got["expression"][:3]  # loop targets are bindings, not values
    assert "f" not in got["expression"] and "x" in got["expression"]  # names defined vs used
    assert got["statements"][0] == SMALL  # the def, one compound statement
    assert len(got["line"]) == SMALL.count("\n")


@pytest.mark.parametrize("text", [PY, SMALL, UNICODE, "", "\n\n", "x", "def f(:\n  pass\nx = (1 +\n"])
def test_node_spans_are_valid_slices(text):
    spans = node_spans(text)
    assert spans == sorted(spans, key=lambda s: (s.start, s.end, s.kind))
    assert len(set(spans)) == len(spans)
    for span in spans:
        assert isinstance(span, NodeSpan) and span.kind in SPAN_KINDS
        assert 0 <= span.start < span.end <= len(text)
        assert text[span.start : span.end].strip()
        if span.kind in ("statement", "statements", "body", "function_body", "line"):
            piece = text[span.start : span.end]
            if span.start == 0 or text[span.start - 1] == "\n":  # whole-line spans end with the line
                assert piece.endswith("\n") or span.end == len(text)


def test_node_spans_whole_lines_with_crlf_and_unicode():
    got = spans_by_kind(UNICODE)
    assert got["function_body"] == ['    msg = "héllo 🎉" + 名前\r\n    return msg\r\n']
    assert got["expression"] == ['"""挨拶 🎉"""', "msg", '"héllo 🎉" + 名前', "msg"]


def test_node_spans_skip_error_regions():
    text = "def f(:\n    pass\n\ndef g():\n    return 2\n"
    got = spans_by_kind(text, kinds=["statement", "function_body"])
    assert got == {"statement": ["    return 2\n"], "function_body": ["    return 2\n"]}


def test_node_spans_kinds_filter_unknown_language_and_errors():
    assert {s.kind for s in node_spans(PY, kinds=["condition"])} == {"condition"}
    assert spans_by_kind("a\n\nb c\n", language="cobol") == {"line": ["a\n", "b c\n"]}
    assert node_spans("a\n", language=None, kinds=["expression"]) == []
    with pytest.raises(ConfigError):
        node_spans(PY, kinds=["paragraph"])


def test_sample_node_span_is_deterministic_and_respects_probs():
    first = [sample_node_span(PY, random.Random(7)) for _ in range(3)]
    assert first == [sample_node_span(PY, random.Random(7)) for _ in range(3)]
    rng = random.Random(0)
    draws = [sample_node_span(PY, rng, probs={"condition": 1.0}) for _ in range(20)]
    assert {d.kind for d in draws} == {"condition"}
    assert sample_node_span("", random.Random(0)) is None
    assert sample_node_span(PY, random.Random(0), probs={"expression": 0.0}) is None
    with pytest.raises(ConfigError):
        sample_node_span(PY, random.Random(0), probs={"nope": 1.0})
    with pytest.raises(ConfigError):
        sample_node_span(PY, random.Random(0), probs={"line": -1.0})


# -- other grammars: the basics -----------------------------------------------------------------------

OTHER = {
    "javascript": ("function f(x) {\n  const y = x + 1;\n  return y;\n}\n", "x + 1", "  const y = x + 1;\n"),
    "typescript": ("export function f(x: number): number {\n  const y = x + 1;\n  return y;\n}\n", "x + 1",
                   "  const y = x + 1;\n"),
    "go": ("package main\n\nfunc f(x int) int {\n\ty := x + 1\n\treturn y\n}\n", "x + 1", "\ty := x + 1\n"),
    "rust": ("fn f(x: i32) -> i32 {\n    let y = x + 1;\n    y\n}\n", "x + 1", "    let y = x + 1;\n"),
    "java": ("class A {\n  int f(int x) {\n    int y = x + 1;\n    return y;\n  }\n}\n", "x + 1",
             "    int y = x + 1;\n"),
    "c": ("int f(int x) {\n  int y = x + 1;\n  return y;\n}\n", "x + 1", "  int y = x + 1;\n"),
    "cpp": ("template <typename T>\nT f(T x) {\n  T y = x + 1;\n  return y;\n}\n", "x + 1", "  T y = x + 1;\n"),
}


@pytest.mark.parametrize("language", sorted(OTHER))
def test_other_languages_snap_and_spans(language):
    if language not in available_languages():
        pytest.skip(f"grammar for {language} not installed")
    text, expr, line = OTHER[language]
    a = text.index(expr)
    s = snap(text, a, a + len(expr), language=language)
    assert (s.kind, cut(text, s)) == ("expression", expr)
    s = snap(text, text.index(line), text.index(line) + len(line), language=language)
    assert (s.kind, cut(text, s)) == ("statement", line)
    got = spans_by_kind(text, language=language)
    assert expr in got["expression"]
    assert line in got["statement"]
    assert got["function_body"][0].startswith(line)


def test_javascript_braces_mean_the_owner():
    if "javascript" not in available_languages():
        pytest.skip("grammar for javascript not installed")
    js = "function f(x) {\n  const y = x + 1;\n  return y;\n}\nf(1);\n"
    s = snap(js, js.index("{\n  const"), js.index("return y;") + 9, language="javascript")
    assert (s.kind, cut(js, s)) == ("statement", "function f(x) {\n  const y = x + 1;\n  return y;\n}\n")
    s = snap(js, js.index("const y"), js.index("return y;") + 9, language="javascript")
    assert (s.kind, cut(js, s)) == ("block", "  const y = x + 1;\n  return y;\n")


def test_comments_above_in_other_languages():
    for language, text, expected in [
        ("rust", "struct S;\n\n/// doc\n#[inline]\nfn f() -> i32 {\n    1\n}\n", "/// doc\n#[inline]\nfn f"),
        ("c", "int g;\n/** multi\n *  line */\nint f() { return 1; }\n", "/** multi\n *  line */\nint f"),
        ("go", "package main\n\n// f does\n// more\nfunc f() {\n}\n", "// f does\n// more\nfunc f"),
    ]:
        if language not in available_languages():
            continue
        anchor = text.index(expected.rsplit("\n", 1)[1])
        s = snap(text, anchor, anchor + 2, language=language)
        assert cut(text, s).startswith(expected), language
