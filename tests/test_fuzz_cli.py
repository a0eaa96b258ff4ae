"""Fuzzing the command line against the promise that it never loses code.

Random files (standard-library modules, and generated ones with CRLF, a byte-order mark, tabs, emoji,
very long lines, blank lines only, no final newline), random ranges (valid, past the end, reversed,
zero, blank lines only), random commands, flags and output modes, against a tiny random model and
scripted models that answer with nothing, with garbage, or with one line for many. For every case:

* no traceback, and the exit code is 0, 1, 2 (or 130);
* on a non-zero exit the file is byte for byte what it was, and nothing went to stdout;
* on success the bytes outside the span are identical, a span that held code is not left blank
  unless --allow-delete was given, and a rewrite keeps the span's line count.

CI runs FUZZ_CASES cases (seeded, about half a minute); `DIFFUCODE_FUZZ_CASES=5000 pytest
tests/test_fuzz_cli.py` runs a longer campaign, `DIFFUCODE_FUZZ_SEED` another seed.
"""

import json
import os
import random
import sysconfig
import traceback
from pathlib import Path

import pytest

from diffucode import cli, syntax
from diffucode.testing import sample_tokenizer
from tests.scripted import scripted_engine

FUZZ_CASES = int(os.environ.get("DIFFUCODE_FUZZ_CASES", "200"))
SEED = int(os.environ.get("DIFFUCODE_FUZZ_SEED", "20261207"))
STDLIB = Path(sysconfig.get_paths()["stdlib"])
MODULES = ["fnmatch.py", "textwrap.py", "colorsys.py", "bisect.py", "shlex.py", "glob.py"]
SCRIPTS = {"empty": "", "garbage": ")) = ((\n\tdef\n", "one line": "    x = 1\n",
           "code": "    value = compute(value)\n"}


def generated_files(rng: random.Random) -> dict[str, bytes]:
    body = ("def f(a, b):\n    c = a + b\n    d = c * 2\n    return d\n\n\n"
            "class K:\n    def m(self):\n        return 1\n")
    return {
        "crlf.py": body.replace("\n", "\r\n").encode(),
        "bom.py": ("\ufeff" + body).encode(),
        "tabs.py": body.replace("    ", "\t").encode(),
        "emoji.py": ("# 🐍 naïve façade\ns = '🎉' * 3  # ✓\n" + body).encode(),
        "long.py": ("x = '" + "a" * 5000 + "'\n" + body).encode(),
        "blank.py": b"\n\n   \n\n",
        "noeol.py": body.rstrip("\n").encode(),
        "empty.py": b"",
    }


def pick_range(rng: random.Random, text: str) -> tuple[int, int]:
    n = max(1, len(cli.line_starts(text)))
    kind = rng.choice(["valid", "valid", "valid", "valid", "past", "reversed", "zero"])
    if kind == "past":
        return n, n + rng.randint(1, 5)
    if kind == "reversed":
        return n, max(1, n - 2) if n > 2 else 0
    if kind == "zero":
        return 0, 1
    a = rng.randint(1, n)
    return a, min(n, a + rng.choice([0, 0, 1, 2]))


def case(rng: random.Random, files: dict[str, bytes], tmp: Path) -> dict:
    name = rng.choice(sorted(files))
    path = tmp / name
    path.write_bytes(files[name])
    text = files[name].decode("utf-8").removeprefix("\ufeff")
    command = rng.choice(["infill", "infill", "rewrite", "complete"])
    mode = rng.choice(["", "--diff", "--json", "--in-place"])
    flags = [f for f in ("--allow-delete", "--no-validate", "--quiet") if rng.random() < 0.2]
    flags += rng.choice([[], ["--candidates", str(rng.randint(1, 3)), "--temperature", "0.7"],
                         ["--max-new-tokens", "6"],
                         ["--length", "3"], ["--steps", "2"], ["--seed", str(rng.randint(0, 9))]])
    if command == "complete":
        line = rng.randint(1, max(1, len(cli.line_starts(text))) + 1)
        target = f"{path}:{line}:{rng.randint(1, 12)}"
    else:
        a, b = pick_range(rng, text)
        target = f"{path}:{a}-{b}"
        if command == "infill" and rng.random() < 0.25:
            flags.append("--snap")
    argv = [command, target, *([mode] if mode else []), *flags]
    return {"path": path, "before": files[name], "text": text, "argv": argv, "model": rng.choice(["random", *SCRIPTS])}


def span_of(c: dict) -> tuple[int, int] | None:
    """The [start, end) the command may change, in offsets of the text (None: a cursor)."""
    command, target = c["argv"][0], c["argv"][1]
    if command == "complete":
        return None
    a, b = map(int, target.rsplit(":", 1)[1].split("-"))
    s, e = cli.lines_to_span(c["text"], a, b)
    if "--snap" in c["argv"]:
        snap = syntax.snap(c["text"], s, e, language="python")
        s, e = snap.start, snap.end
    return s, e


def check(c: dict, code: int, out: bytes, err: str) -> None:
    assert "Traceback" not in err, err
    assert code in (0, 1, 2, 130), (code, err)
    after = c["path"].read_bytes()
    if code != 0:
        assert after == c["before"], "the file changed on a failed run"
        assert out == b"" or "--json" in c["argv"], out[:200]
        assert err.strip(), "a failure must say why"
        return
    mode = next((m for m in ("--diff", "--json", "--in-place") if m in c["argv"]), "")
    if mode in ("--diff", "--json"):
        assert after == c["before"]
        return
    new = after if mode == "--in-place" else out
    if mode != "--in-place":
        assert after == c["before"]
    span = span_of(c)
    bom = b"\xef\xbb\xbf" if c["before"].startswith(b"\xef\xbb\xbf") else b""
    if span is None:  # complete: everything before the cursor's line is kept
        line = int(c["argv"][1].rsplit(":", 2)[1])
        keep = bom + c["text"][: cli.line_starts(c["text"])[line - 1] if line <= len(cli.line_starts(c["text"]))
                               else len(c["text"])].encode()
        assert new.startswith(keep)
        return
    s, e = span
    head, tail = bom + c["text"][:s].encode(), c["text"][e:].encode()
    assert new.startswith(head) and new.endswith(tail), "bytes outside the span changed"
    middle = new[len(head) : len(new) - len(tail)].decode()
    old = c["text"][s:e]
    if old.strip() and "--allow-delete" not in c["argv"]:
        assert middle.strip(), "a span that held code was written blank"
    if c["argv"][0] == "rewrite" and "--allow-delete" not in c["argv"]:
        assert middle.count("\n") == old.count("\n"), "a rewrite changed the span's line count"


@pytest.fixture(scope="module")
def engines(tiny_engine):
    tok = sample_tokenizer(512)
    return {"random": tiny_engine, **{k: scripted_engine(tok, v) for k, v in SCRIPTS.items()}}


@pytest.mark.slow
def test_fuzz_the_cli_never_loses_code(engines, tmp_path, monkeypatch, capsysbinary):
    rng = random.Random(SEED)
    files = {m: (STDLIB / m).read_bytes() for m in MODULES if (STDLIB / m).is_file()}
    files.update(generated_files(rng))
    current = {}
    monkeypatch.setattr(cli, "_load", lambda args: engines[current["model"]])
    codes: dict[int, int] = {}
    for i in range(FUZZ_CASES):
        c = case(rng, files, tmp_path)
        current["model"] = c["model"]
        try:
            code = cli.main([str(a) for a in c["argv"]])
        except BaseException:  # noqa: BLE001 - anything that escapes main() is a traceback for the user
            pytest.fail(f"case {i} ({c['model']} model): diffucode {' '.join(map(str, c['argv']))}\n"
                        f"{traceback.format_exc()}")
        out, err = capsysbinary.readouterr()
        try:
            check(c, code, out, err.decode("utf-8"))
        except AssertionError as exc:
            raise AssertionError(f"case {i} ({c['model']} model, exit {code}): diffucode "
                                 f"{' '.join(map(str, c['argv']))}\nstderr: {err.decode()[-500:]}\n{exc}") from exc
        if code == 0 and "--json" in c["argv"]:
            json.loads(out)
        codes[code] = codes.get(code, 0) + 1
    assert codes.get(0) and codes.get(1) and codes.get(2), codes  # the cases reach success, refusal and bad input
