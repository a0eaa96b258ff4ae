"""Read access to a prepared data folder (shards.py): one split's documents as token arrays, with their
syntax spans and function bodies, memory-mapped.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from diffucode.errors import ConfigError


class TokenStore:
    """Read access to one split of a data folder: documents as token arrays, with their spans and bodies.

    Memory-maps lazily, so an instance can be handed to DataLoader workers (fork or spawn) cheaply.
    """

    def __init__(self, folder: str | Path, split: str = "train"):
        self.folder = Path(folder)
        self.split = split
        index = json.loads((self.folder / "index.json").read_text())
        self.index = index
        self.shards = [s["name"] for s in index["shards"] if s["split"] == split]
        if not self.shards:
            raise ConfigError(f"{self.folder} has no {split} shards")
        shard_of, start, length, nbytes, s_lo, s_hi, b_lo, b_hi, keys = [], [], [], [], [], [], [], [], []
        for k, name in enumerate(self.shards):
            meta = json.loads((self.folder / f"{name}.json").read_text())
            n = len(meta["start"])
            shard_of += [k] * n
            start += meta["start"]
            length += meta["length"]
            nbytes += meta["bytes"]
            s_lo += meta["span_off"][:-1]
            s_hi += meta["span_off"][1:]
            b_lo += meta["body_off"][:-1]
            b_hi += meta["body_off"][1:]
            keys += meta["keys"]
        self.doc_shard = np.array(shard_of, dtype=np.int64)
        self.doc_start = np.array(start, dtype=np.int64)
        self.doc_len = np.array(length, dtype=np.int64)
        self.doc_bytes = np.array(nbytes, dtype=np.int64)
        self.span_range = np.stack([np.array(s_lo, np.int64), np.array(s_hi, np.int64)], 1)
        self.body_range = np.stack([np.array(b_lo, np.int64), np.array(b_hi, np.int64)], 1)
        self.keys = keys
        self.dtype = np.dtype(index["dtype"])
        self._maps: dict | None = None

    def __len__(self) -> int:
        return len(self.doc_len)

    @property
    def n_tokens(self) -> int:
        return int(self.doc_len.sum())

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_maps"] = None  # re-opened in the worker
        return state

    def _open(self) -> dict:
        if self._maps is None:
            maps = {"tok": [], "spans": [], "bodies": []}
            for name in self.shards:
                maps["tok"].append(_memmap(self.folder / f"{name}.tok", self.dtype, (-1,)))
                maps["spans"].append(_memmap(self.folder / f"{name}.spans", np.int32, (-1, 3)))
                maps["bodies"].append(_memmap(self.folder / f"{name}.bodies", np.int32, (-1, 3)))
            self._maps = maps
        return self._maps

    def tokens(self, doc: int) -> np.ndarray:
        """(n,) the document's tokens (a read-only view into the shard)."""
        s = self.doc_start[doc]
        return self._open()["tok"][self.doc_shard[doc]][s : s + self.doc_len[doc]]

    def spans(self, doc: int) -> np.ndarray:
        lo, hi = self.span_range[doc]
        return self._open()["spans"][self.doc_shard[doc]][lo:hi]

    def bodies(self, doc: int) -> np.ndarray:
        lo, hi = self.body_range[doc]
        return self._open()["bodies"][self.doc_shard[doc]][lo:hi]


def _memmap(path: Path, dtype, shape) -> np.ndarray:
    itemsize = np.dtype(dtype).itemsize * (shape[1] if len(shape) > 1 else 1)
    n = path.stat().st_size // itemsize
    if n == 0:
        return np.zeros((0,) + tuple(shape[1:]), dtype=dtype)
    # A plain ndarray view of the map: the memmap subclass adds ~50 µs to every slice and ufunc.
    return np.memmap(path, dtype=dtype, mode="r", shape=(n,) + tuple(shape[1:])).view(np.ndarray)
