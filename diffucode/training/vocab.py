"""The run's tokenizer: byte-level BPE trained on a deterministic sample of the training documents, and
the per-token tables (byte length, ends a line) that masking and evaluation read instead of decoding.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from diffucode.errors import ConfigError
from diffucode.tokenizer import Tokenizer
from diffucode.training.corpus import DataConfig
from diffucode.training.files import read_source


def train_tokenizer(corpus: dict, cfg: DataConfig, path: Path, *, log=print) -> Tokenizer:
    """Train the BPE on a deterministic sample of the training documents (sorted by content hash)."""
    if path.is_file():
        return Tokenizer.from_file(path)
    t0 = time.time()
    budget = int(cfg.tokenizer_sample_mb * 1e6)
    docs = sorted((d for d in corpus["docs"] if d["split"] == "train"), key=lambda d: d["sha1"])
    texts, used = [], 0
    for d in docs:
        if used >= budget:
            break
        texts.append(read_source(d["path"]))
        used += d["bytes"]
    if not texts:
        raise ConfigError("the corpus has no training documents")
    tok = Tokenizer.train(texts, vocab_size=cfg.vocab_size)
    tmp = path.with_name(path.name + ".tmp")
    tok.save(tmp)
    os.replace(tmp, path)
    log(f"tokenizer: {tok.vocab_size} tokens from {used / 1e6:.1f} MB [{time.time() - t0:.1f}s]")
    return tok


def _bytes_to_unicode() -> dict[int, str]:
    """The byte → printable character table of byte-level BPE (GPT-2's convention, used by `tokenizers`)."""
    keep = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
            + list(range(ord("®"), ord("ÿ") + 1)))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def token_tables(tok: Tokenizer) -> tuple[np.ndarray, np.ndarray]:
    """(byte_len, ends_line), both indexed by token id: the token's length in UTF-8 bytes (0 for special
    tokens), and whether it ends with a newline (so the next token starts a line)."""
    nl = _bytes_to_unicode()[10]
    V = tok.vocab_size
    byte_len = np.zeros(V, dtype=np.int32)
    ends_line = np.zeros(V, dtype=bool)
    for s, i in tok.hf.get_vocab().items():
        if i in tok.special_ids:
            continue
        byte_len[i] = len(s)
        ends_line[i] = s.endswith(nl)
    return byte_len, ends_line
