"""Held-out bits per byte of diffucode models on the same text, whatever their tokenizers.

A training run measures its model on its own held-out token windows; two models with different
tokenizers (or trained from different corpora) cannot be compared that way. Here the text is fixed
first: held-out documents are cut at line boundaries into chunks of at most `chunk_bytes` bytes, and
only chunks that every compared model can read whole (its tokens fit its context) are kept. Each
model then gets the masked-diffusion ELBO of every chunk (t stratified over the chunks, two passes,
cross-entropy of the masked tokens weighted 1/t: diffucode/training/elbo.py, the estimator of diffucode
train's evaluation) and the sum is divided by the chunks' bytes: bits per byte, comparable across
tokenizers.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from diffucode import checkpoint
from diffucode.tokenizer import Tokenizer
from diffucode.training.elbo import elbo_terms
from diffucode.training.token_store import TokenStore


def heldout_texts(run_dir: str | Path) -> list[str]:
    """The held-out documents of a training run, decoded from its shards (byte-level BPE is lossless)."""
    run_dir = Path(run_dir)
    tok = Tokenizer.from_file(run_dir / "tokenizer.json")
    store = TokenStore(run_dir / "data", "heldout")
    return [tok.decode(store.tokens(d).tolist()) for d in range(len(store))]


def chunks(texts: list[str], *, chunk_bytes: int = 600) -> list[str]:
    """Consecutive whole lines of each text, at most `chunk_bytes` UTF-8 bytes a chunk (a longer line
    is a chunk of its own); blank-only chunks are dropped."""
    out = []
    for text in texts:
        cur, size = [], 0
        for line in text.splitlines(keepends=True):
            n = len(line.encode("utf-8"))
            if cur and size + n > chunk_bytes:
                out.append("".join(cur))
                cur, size = [], 0
            cur.append(line)
            size += n
        if cur:
            out.append("".join(cur))
    return [c for c in out if c.strip()]


def common_chunks(texts: list[str], models: list[checkpoint.Checkpoint], *, n: int, seed: int = 0,
                  chunk_bytes: int = 600) -> list[str]:
    """Up to `n` chunks (seeded choice, in text order) that fit every model's context."""
    pool = [c for c in chunks(texts, chunk_bytes=chunk_bytes)
            if all(len(m.tokenizer.encode(c)) <= m.model.cfg.max_seq_len for m in models)]
    if len(pool) > n:
        keep = np.sort(np.random.default_rng(seed).choice(len(pool), n, replace=False))
        pool = [pool[i] for i in keep]
    return pool


@torch.no_grad()
def bits_per_byte(ck: checkpoint.Checkpoint, texts: list[str], *, eps: float = 1e-3, batch: int = 16,
                  seed: int = 1234) -> float:
    """ELBO bits per UTF-8 byte of `texts` under the model (each text one row, padded with <|pad|>,
    which is neither masked nor counted)."""
    tok, model = ck.tokenizer, ck.model.eval()
    rows = [tok.encode(t) for t in texts]
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), tok.pad_id, dtype=torch.long)
    real = torch.zeros((len(rows), T), dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        real[i, : len(r)] = True
    gen = torch.Generator().manual_seed(seed)
    nats = 0.0
    for term in elbo_terms(model, ids, real, mask_id=tok.mask_id, eps=eps, generator=gen, micro=batch):
        for s in range(0, len(rows), batch):  # batch by batch: the order of the float32 sums fixes the last bits
            nats += float(term[s : s + batch].sum())
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    return nats / 2 / math.log(2) / max(n_bytes, 1)
