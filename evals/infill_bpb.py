"""Bits per byte of infill tasks' right fills, in the hole the model would fill: how sure a model is of
the canonical text in its place, the prompt and suffix laid out as `diffucode infill` lays them out.

pass@1 on the 1,033 single-line tasks moves by whole tasks (one is 0.1 point), and two models a few million
training tokens apart differ by a handful of them, within the noise. Comparing objectives or checkpoints
that close needs a finer measure of the same job. Per task, the hole is the one the infill path gives the
task's empty span (infill.pad_hole_length for a model trained with pad tails, never shorter than the fill;
otherwise the fill's own length), holding the canonical fill's tokens and then pads. The hole is masked
as training masks its infill holes (diffucode/training/masking.py): each position with probability t, and
a revealed pad reveals the pads after it (the sampler commits pads only as a closed tail, so the model
never sees a mask after a visible pad). The cross-entropy of the masked positions, content and pads, is
weighted 1/t, with t stratified over the tasks and two passes (the estimator of diffucode/training/elbo.py):
training's infill loss on these tasks, in nats; divided by the fills' UTF-8 bytes (pads have none), bits
per byte. The masks depend on the seed and the token counts only, so models that share a tokenizer and
the pad-tail convention are measured on the same masks: a paired comparison.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from diffucode.engine import Engine
from diffucode.infill import Layout, model_text, pad_hole_length
from diffucode.settings import InfillSettings
from diffucode.training.elbo import masked_ce
from diffucode_evals.data import Task


def task_row(engine: Engine, task: Task, settings: InfillSettings) -> tuple[list[int], slice, int]:
    """The ids the model reads for `task` with its canonical fill in the hole, the hole's positions, and
    how many of them are the fill's tokens (the rest are pads)."""
    fill = engine.tokenizer.encode(model_text(task.canonical_solution))
    content = len(fill)
    if engine.pad_tail:
        size = max(len(fill), pad_hole_length(0, settings.max_new_tokens))
        fill = fill + [engine.denoiser.pad_id] * (size - len(fill))
    at = len(task.prompt)
    layout = Layout.build(engine, task.prompt + task.suffix, [(at, at)], [len(fill)], settings)
    start = len(layout.prefix_ids)
    return layout.ids_with([fill]), slice(start, start + len(fill)), content


def hole_mask(n: int, hole: slice, content: int, t: float, generator: torch.Generator) -> torch.Tensor:
    """(n,) the positions masked at rate t: hole positions each with probability t, except the pads after
    the first revealed pad (a revealed pad reveals the tail after it, as in training)."""
    drawn = torch.rand(hole.stop - hole.start, generator=generator) < t
    revealed_pads = (~drawn[content:]).nonzero()
    if len(revealed_pads):
        drawn[content + int(revealed_pads[0]):] = False
    m = torch.zeros(n, dtype=torch.bool)
    m[hole] = drawn
    return m


@torch.no_grad()
def infill_bits_per_byte(engine: Engine, tasks: Sequence[Task], *, settings: InfillSettings | None = None,
                         eps: float = 1e-3, seed: int = 1234, micro: int = 16) -> float:
    """ELBO bits per UTF-8 byte of the tasks' canonical fills in place (the module docstring says how)."""
    if not tasks:
        raise ValueError("no tasks to measure")
    settings = settings or InfillSettings()
    den = engine.denoiser
    rows = [task_row(engine, task, settings) for task in tasks]
    by_length: dict[int, list[int]] = {}  # rows of one length share a batch (no padding changes the context)
    for i, (ids, _, _) in enumerate(rows):
        by_length.setdefault(len(ids), []).append(i)
    gen = torch.Generator().manual_seed(seed)
    n, nats = len(rows), 0.0
    for k in range(2):
        t = (((torch.arange(n) + 0.5 + k / 2) / n) % 1.0).clamp(min=eps)
        masks = [hole_mask(len(ids), hole, content, float(t[i]), gen) for i, (ids, hole, content) in enumerate(rows)]
        for members in by_length.values():
            ids = torch.tensor([rows[i][0] for i in members])
            ce = masked_ce(den.logits, ids, torch.stack([masks[i] for i in members]), mask_id=den.mask_id,
                           micro=micro, device=den.device)
            nats += float((ce.sum(1) / t[members]).sum())
    n_bytes = sum(len(model_text(task.canonical_solution).encode("utf-8")) for task in tasks)
    return nats / 2 / math.log(2) / max(n_bytes, 1)
