"""Token shards: the tokenized training and held-out documents on disk, with their syntax spans and
function bodies, and `prepare`, which builds (or finishes building) a whole data folder: corpus scan
(corpus.py) → tokenizer (vocab.py) → shards → index.json. Re-running it skips what is already done.

A prepared data folder (runs/NAME/data/ inside a run folder):

    corpus.json          kept documents (key, path, sha1, bytes, split) and rejection counts
    index.json           shard list, token counts, the tokenizer's sha256, the settings fingerprint
    train-00000.tok      uint16 tokens (uint32 if the vocabulary exceeds 65,535), documents concatenated
    train-00000.spans    int32 (S, 3): syntax spans (start, end, kind) in document-local token positions
    train-00000.bodies   int32 (F, 3): function bodies (def start, body start, body end), likewise
    train-00000.json     per-document arrays (key, token start, token count, bytes, span/body offsets);
                         written last, so its presence marks a finished shard

Documents are stored without separators: masking.py cuts windows inside one document and fills the
room after a document's end with <|pad|> (the inference engine's convention for "end of text").
Syntax spans and function bodies (spans.py) are computed here, once, in the worker pool, so the data
loader never parses: it only reads token arrays (token_store.py).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from diffucode.errors import ConfigError
from diffucode.tokenizer import Tokenizer
from diffucode.training.corpus import FORMAT_VERSION, DataConfig, scan_corpus
from diffucode.training.files import file_sha, parallel_map, read_source, text_sha, write_array, write_json
from diffucode.training.spans import SPAN_KINDS, doc_spans
from diffucode.training.vocab import token_tables, train_tokenizer

_WORKER: dict = {}


def _shard_init(tok_path: str, cfg_dict: dict) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    tok = Tokenizer.from_file(tok_path)
    _WORKER["tok"] = tok
    _WORKER["tables"] = token_tables(tok)
    _WORKER["cfg"] = DataConfig.from_dict(cfg_dict)


def _build_shard(job: tuple[str, str, list[dict], str]) -> tuple[str, int, int]:
    out, name, docs, tok_sha = job
    out = Path(out)
    tok: Tokenizer = _WORKER["tok"]
    byte_len, _ = _WORKER["tables"]
    cfg: DataConfig = _WORKER["cfg"]
    texts = [read_source(d["path"]) for d in docs]
    ids = tok.encode_batch(texts)
    dtype = np.uint16 if tok.vocab_size <= 65535 else np.uint32
    starts, lens, nbytes, span_off, body_off = [], [], [], [0], [0]
    spans, bodies = [], []
    pos = 0
    for d, text, toks in zip(docs, texts, ids):
        arr = np.asarray(toks, dtype=np.int64)
        use_nodes = int(d["sha1"][:8], 16) % 1000 < cfg.node_span_frac * 1000
        sp, bd = doc_spans(text, arr, byte_len, cfg, use_nodes=use_nodes)
        spans.append(sp)
        bodies.append(bd)
        starts.append(pos)
        lens.append(len(toks))
        nbytes.append(len(text.encode("utf-8")))
        span_off.append(span_off[-1] + len(sp))
        body_off.append(body_off[-1] + len(bd))
        pos += len(toks)
    flat = np.fromiter((t for toks in ids for t in toks), dtype=dtype, count=pos)
    write_array(out / f"{name}.tok", flat)
    write_array(out / f"{name}.spans", np.concatenate(spans).astype(np.int32) if spans else np.zeros((0, 3), np.int32))
    write_array(out / f"{name}.bodies",
                np.concatenate(bodies).astype(np.int32) if bodies else np.zeros((0, 3), np.int32))
    meta = {
        "fingerprint": _shard_fingerprint(docs),
        "tokenizer_sha256": tok_sha,
        "keys": [d["key"] for d in docs],
        "start": starts,
        "length": lens,
        "bytes": nbytes,
        "span_off": span_off,
        "body_off": body_off,
        "tokens": pos,
        "dtype": np.dtype(dtype).name,
    }
    write_json(out / f"{name}.json", meta)
    return name, len(docs), pos


def _shard_fingerprint(docs: list[dict]) -> str:
    return text_sha("\n".join(f"{d['key']}:{d['sha1']}" for d in docs))


def plan_shards(corpus: dict, cfg: DataConfig) -> list[tuple[str, list[dict]]]:
    """Deterministic grouping of documents (sorted by key) into shards of about `shard_mb` of text."""
    plans = []
    for split in ("train", "heldout"):
        docs = [d for d in corpus["docs"] if d["split"] == split]
        cur, size, i = [], 0, 0
        for d in docs:
            cur.append(d)
            size += d["bytes"]
            if size >= cfg.shard_mb * 1e6:
                plans.append((f"{split}-{i:05d}", cur))
                cur, size, i = [], 0, i + 1
        if cur:
            plans.append((f"{split}-{i:05d}", cur))
    return plans


def prepare(out: str | Path, cfg: DataConfig, *, tokenizer_path: str | Path | None = None, workers: int = 0,
            log=print) -> Path:
    """Build (or finish building) the data folder `out`: corpus scan, tokenizer, shards, index.json.

    `tokenizer_path`: where the tokenizer lives (trained there if missing; an existing one is reused,
    never retrained, so a resumed run keeps its vocabulary). Returns the folder.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok_path = Path(tokenizer_path) if tokenizer_path else out / "tokenizer.json"
    workers = workers or min(32, os.cpu_count() or 1)
    if is_built(out, tok_path, cfg):
        return out
    t0 = time.time()
    corpus = scan_corpus(cfg, out, workers=workers, log=log)
    if not any(d["split"] == "train" for d in corpus["docs"]):  # also with a given tokenizer (--init-from)
        raise ConfigError(f"the corpus has no training documents: {corpus['files_seen']} files ending in "
                          f"{', '.join(cfg.exts)} found in {', '.join(corpus['sources'])}; "
                          f"rejected: {corpus['rejected'] or 'none'}")
    tok = train_tokenizer(corpus, cfg, tok_path, log=log)
    tok_sha = file_sha(tok_path)
    plans = plan_shards(corpus, cfg)
    _build_shards(out, plans, cfg, tok_path, tok_sha, workers=workers, log=log)
    index = _write_index(out, plans, cfg, corpus, tok, tok_sha)
    stats = index["stats"]
    tr = stats["train"]
    log(f"data: {tr['docs']} train docs, {tr['tokens'] / 1e6:.1f} M tokens, "
        f"{tr['bytes'] / max(tr['tokens'], 1):.2f} bytes/token, {tr['spans']} syntax spans, {tr['bodies']} bodies; "
        f"held out {stats['heldout']['docs']} docs [{time.time() - t0:.1f}s]")
    return out


def is_built(out: Path, tok_path: Path, cfg: DataConfig) -> bool:
    """Whether index.json describes a finished folder for this tokenizer and these settings."""
    index_path = out / "index.json"
    if not (index_path.is_file() and tok_path.is_file()):
        return False
    index = json.loads(index_path.read_text())
    return (index.get("tokenizer_sha256") == file_sha(tok_path) and index.get("config_sha256") == _config_sha(cfg)
            and all((out / f"{s['name']}.json").is_file() for s in index["shards"]))


def _build_shards(out: Path, plans: list[tuple[str, list[dict]]], cfg: DataConfig, tok_path: Path, tok_sha: str, *,
                  workers: int, log) -> None:
    """Build the planned shards that are missing or stale (other documents or another tokenizer)."""
    todo = []
    for name, docs in plans:
        meta = out / f"{name}.json"
        if meta.is_file():
            old = json.loads(meta.read_text())
            if old.get("fingerprint") == _shard_fingerprint(docs) and old.get("tokenizer_sha256") == tok_sha:
                continue
        todo.append((str(out), name, docs, tok_sha))
    if todo:
        t1 = time.time()
        parallel_map(_build_shard, todo, workers, _shard_init, (str(tok_path), cfg.to_dict()), chunksize=1)
        log(f"shards: built {len(todo)} of {len(plans)} [{time.time() - t1:.1f}s]")


def _write_index(out: Path, plans: list[tuple[str, list[dict]]], cfg: DataConfig, corpus: dict, tok: Tokenizer,
                 tok_sha: str) -> dict:
    """index.json: the shards with their counts, per-split totals, and what the folder was built from."""
    shards = []
    for name, docs in plans:
        meta = json.loads((out / f"{name}.json").read_text())
        shards.append({"name": name, "split": name.split("-")[0], "docs": len(docs), "tokens": meta["tokens"],
                       "bytes": int(sum(meta["bytes"])), "spans": meta["span_off"][-1],
                       "bodies": meta["body_off"][-1]})
    counted = ("docs", "tokens", "bytes", "spans", "bodies")
    stats = {split: {k: sum(s[k] for s in shards if s["split"] == split) for k in counted}
             for split in ("train", "heldout")}
    index = {
        "version": FORMAT_VERSION,
        "tokenizer_sha256": tok_sha,
        "vocab_size": tok.vocab_size,
        "dtype": "uint16" if tok.vocab_size <= 65535 else "uint32",
        "config_sha256": _config_sha(cfg),
        "spans": cfg.spans,
        "span_kinds": list(SPAN_KINDS),
        "shards": shards,
        "stats": stats,
        "corpus": {k: corpus[k] for k in ("sources", "bench_data", "decontamination_ngrams", "files_seen", "rejected")},
    }
    write_json(out / "index.json", index)
    return index


def _config_sha(cfg: DataConfig) -> str:
    return text_sha(json.dumps(cfg.to_dict(), sort_keys=True))
