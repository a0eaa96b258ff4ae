"""Deterministic tiny checkpoints for the decoding-parity fixtures (tests/fixtures/parity/*.json).

A fixture records what a model family's authors' own generation function produced (run outside this
repository, by the script quoted in the fixture's `made_by`) on a tiny random checkpoint in the
family's exact on-disk format. The checkpoint is not stored: it is rebuilt here from the fixture's
config, tensor shapes and seed by `build_folder`, the same recipe the fixture's script used, and the
rebuilt weights must match the recorded checksum before a replay counts.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch


def seeded_state(shapes: dict[str, list[int]], seed: int) -> dict[str, torch.Tensor]:
    """Weights for the given tensor names/shapes: names in sorted order, one torch.Generator(seed).
    Norm gains 1 + 0.1·N(0,1); biases 0.1·N(0,1); every other tensor N(0,1)/sqrt(last dim)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name in sorted(shapes):
        shape = [int(s) for s in shapes[name]]
        t = torch.randn(*shape, generator=g, dtype=torch.float32)
        if "norm" in name:
            t = 1.0 + 0.1 * t
        elif name.endswith(".bias"):
            t = 0.1 * t
        else:
            t = t / math.sqrt(shape[-1])
        out[name] = t.contiguous()
    return out


def checksum(state: dict[str, torch.Tensor]) -> float:
    """Sum of |w| over all tensors in float64: a check that both sides built the same weights."""
    return float(sum(v.double().abs().sum() for v in state.values()))


def write_tokenizer(folder: Path, vocab_size: int, specials: dict[str, int],
                    tokenizer_config: dict | None = None) -> None:
    """A word-level tokenizer.json of `vocab_size` ids: ordinary tokens "t0", "t1", ... and the special
    tokens at the ids given (e.g. {"<|mask|>": 300, "<|endoftext|>": 301}); plus tokenizer_config.json."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers

    by_id = {i: t for t, i in specials.items()}
    vocab = {by_id.get(i, f"t{i}"): i for i in range(vocab_size)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in sorted(specials, key=specials.get)])
    tok.save(str(folder / "tokenizer.json"))
    added = {str(i): {"content": t, "special": True, "lstrip": False, "rstrip": False, "normalized": False,
                      "single_word": False} for t, i in specials.items()}
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "added_tokens_decoder": added, **(tokenizer_config or {})}
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg, indent=1))


def build_folder(folder: Path, *, config: dict, shapes: dict[str, list[int]], seed: int, vocab_size: int,
                 specials: dict[str, int], tokenizer_config: dict | None = None,
                 extra_files: dict[str, str] | None = None) -> float:
    """config.json + model.safetensors (seeded_state) + tokenizer files (+ any extra text files, e.g. the
    authors' generation_config.json). Returns the weights' checksum."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    state = seeded_state(shapes, seed)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    write_tokenizer(folder, vocab_size, specials, tokenizer_config)
    for name, text in (extra_files or {}).items():
        (folder / name).write_text(text)
    return checksum(state)
