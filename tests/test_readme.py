"""README.md's quick-start commands are the ones CI runs, and its main job works offline."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def quick_start() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start.*?```bash\n(.*?)```", text, re.S)[1]
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_ci_runs_the_readme_commands():
    install, tests = quick_start()
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests in ci.splitlines(), "CI must run README's test command as written"
    for step in install.split(" && ")[:-1]:  # the install steps; the main job is run below
        assert step.replace("pip install", "pip install -q") in ci, step


def test_readme_main_job_runs_offline_on_the_embedded_model(tmp_path):
    from diffucode.loading import EMBEDDED

    if not (EMBEDDED / "config.json").is_file():
        pytest.fail("no embedded model shipped: README's main job cannot run")
    install, _ = quick_start()
    job = shlex.split(install.split(" && ")[-1])
    assert job[0] == "diffucode"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "diffucode", *job[1:]], cwd=ROOT, capture_output=True, text=True, env=env,
                       timeout=600)
    if r.returncode == 1:  # the model's fill would delete the lines: refused, in one line, nothing written
        assert r.stdout == "" and r.stderr.startswith("diffucode: refused: ") and r.stderr.count("\n") == 1, r.stderr
        assert "refused" in (ROOT / "README.md").read_text().split("## Command line")[0], "README must say so"
        return
    assert r.returncode == 0, r.stderr
    # The diff touches only the requested lines (12-13 of examples/stats.py), and writes code there.
    target = next(a for a in job if a.startswith("examples/"))
    first, last = map(int, target.split(":")[1].split("-"))
    hunks = re.findall(r"^@@ -(\d+),(\d+) ", r.stdout, re.M)
    removed = [n for n, line in _old_line_numbers(r.stdout) if line.startswith("-")]
    assert removed and all(first <= n <= last for n in removed), r.stdout
    added = [line[1:] for line in r.stdout.splitlines() if line.startswith("+") and not line.startswith("+++")]
    assert hunks and any(a.strip() for a in added), r.stdout


def _old_line_numbers(diff: str):
    """(old-file line number, diff line) for each '-' or ' ' line of a unified diff."""
    n = 0
    for line in diff.splitlines():
        m = re.match(r"^@@ -(\d+)", line)
        if m:
            n = int(m[1])
        elif line.startswith(("-", " ")) and not line.startswith("---"):
            yield n, line
            n += 1


def test_docs_name_no_path_of_one_machine():
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        assert not re.search(r"(?<![\w.])/(work|root|home/\w+)/", text), f"{doc.name} names a path of one machine"


def test_tests_find_the_benchmark_data_through_the_environment(tmp_path):
    code = "from tests.benchdata import DATA; print(DATA)"
    env = {**os.environ, "DIFFUCODE_EVAL_DATA": str(tmp_path)}
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env, timeout=60)
    assert r.stdout.strip() == str(tmp_path), r.stderr
