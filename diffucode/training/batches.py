"""The training data as a DataLoader sees it: item i is one micro-batch of one optimizer step for this
rank (masking.py's BatchSource builds the rows), and a sampler that starts where a resumed run stopped.
"""

from __future__ import annotations

import numpy as np
import torch

from diffucode.training.masking import BatchSource


class MicroBatches(torch.utils.data.Dataset):
    """Item i = micro-batch m of step s (i = s * accum + m) for this rank, as tensors.

    Rows are addressed globally (step * batch_size + ...), so the same step reads the same rows after a
    resume, whatever the number of workers."""

    def __init__(self, source: BatchSource, *, batch_size: int, micro: int, accum: int, world: int, rank: int):
        self.source, self.batch_size, self.micro = source, batch_size, micro
        self.accum, self.world, self.rank = accum, world, rank

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, i: int) -> dict:
        step, m = divmod(int(i), self.accum)
        first = step * self.batch_size + (m * self.world + self.rank) * self.micro
        b = self.source.batch(first // self.micro)  # rows first … first + micro - 1
        flat_w = b.weights.reshape(-1)
        sel = np.flatnonzero(flat_w > 0)
        return {
            "ids": torch.from_numpy(b.ids),
            "sel": torch.from_numpy(sel),
            "targets": torch.from_numpy(b.targets.reshape(-1)[sel]),
            "w": torch.from_numpy(flat_w[sel]),
            "row_of": torch.from_numpy(sel // b.ids.shape[1]),
            "kind": torch.from_numpy(b.kind.astype(np.int64)),
        }


class CountFrom(torch.utils.data.Sampler):
    """The item indices start, start + 1, ... without end (a resumed run starts at its step's first item)."""

    def __init__(self, start: int):
        self.start = start

    def __iter__(self):
        i = self.start
        while True:
            yield i
            i += 1

    def __len__(self) -> int:
        return 2**62
