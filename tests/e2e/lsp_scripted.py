"""Run the diffucode language server with a scripted denoiser, for tests that need exact output.

    python tests/e2e/lsp_scripted.py --script "total + 1" --delay 0.04 -- --model FOLDER

The model folder is loaded for real (so load errors behave as in production); its tokenizer then
drives tests/scripted.py's ScriptedDenoiser, which writes `--script` into every hole. `--delay`
sleeps that long per forward pass, to make jobs long enough to cancel.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ (scripted.py)

import torch  # noqa: E402

from diffucode.loading import load_engine  # noqa: E402
from diffucode_lsp.cli import main  # noqa: E402
from scripted import ScriptedDenoiser, scripted_engine  # noqa: E402


class SlowScripted:
    """Delays each forward; forgets the hole layout when a new job starts (a fresh mask layout)."""

    def __init__(self, inner: ScriptedDenoiser, delay: float):
        self.inner, self.delay, self._masks = inner, delay, None

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def logits(self, ids: torch.Tensor, positions=None):
        masks = set((ids[0] == self.inner.mask_id).nonzero().flatten().tolist())
        if self._masks is None or not masks <= self._masks:
            self.inner._starts = None  # a new job: recompute where its holes start
        self._masks = masks
        if self.delay:
            time.sleep(self.delay)
        return self.inner.logits(ids, positions)


def make_loader(script: str, delay: float):
    def loader(model, device, **options):  # load options (quantize "auto", ...) do not matter to a script
        engine = load_engine(model, device=device)
        scripted = scripted_engine(engine.tokenizer, script)
        scripted.denoiser = SlowScripted(scripted.denoiser, delay)
        scripted.name = f"scripted:{model}"
        return scripted

    return loader


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--script", required=True)
    p.add_argument("--delay", type=float, default=0.0)
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args = p.parse_args(argv[:cut])
    sys.exit(main(argv[cut + 1 :], loader=make_loader(args.script, args.delay)))
