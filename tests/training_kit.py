"""A tiny training run shared by the training and campaign tests: a few stdlib modules, the `tiny` preset."""

import shutil
import sysconfig
from pathlib import Path

from diffucode.training import cli as train_cli

STDLIB = Path(sysconfig.get_paths()["stdlib"])
MODULES = ["textwrap.py", "string.py", "bisect.py", "heapq.py", "fnmatch.py", "shlex.py", "colorsys.py", "glob.py",
           "json/decoder.py", "json/encoder.py", "json/scanner.py", "json/__init__.py", "abc.py", "numbers.py",
           "pprint.py", "queue.py", "sched.py", "stat.py", "tabnanny.py", "token.py", "calendar.py", "base64.py",
           "csv.py", "difflib.py", "dataclasses.py", "enum.py", "functools.py", "gettext.py", "locale.py",
           "operator.py"]
TRAIN = ["--preset", "tiny", "--seq-len", "64", "--batch-size", "8", "--lr", "3e-3", "--warmup-steps", "5",
         "--eval-rows", "16", "--infill-rows", "4", "--save-every", "0", "--num-workers", "0", "--no-compile",
         "--quiet", "--device", "cpu", "--hole-menu", "8", "16", "24", "--max-body-tokens", "24",
         "--max-span-tokens", "24"]


def prepare_run(root: Path) -> Path:
    """root/base: a run folder with data and tokenizer only (made through the CLI with --prepare-only)."""
    src = root / "src"
    for m in MODULES:
        if (STDLIB / m).is_file():
            (src / m).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(STDLIB / m, src / m)
    out = root / "base"
    rc = train_cli.main(["--out", str(out), "--prepare-only", "--sources", str(src), "--vocab-size", "512",
                     "--heldout-permille", "250", "--no-decontaminate", "--tokenizer-sample-mb", "1",
                     "--data-workers", "1", *TRAIN])
    assert rc == 0
    return out
