"""Byte-level BPE tokenizer (HF `tokenizers`) with the special tokens masked diffusion needs.

Special tokens come first in the vocabulary so their ids are stable across retrains:
`<|mask|>` = 0 (the absorbing state of the forward process), `<|pad|>` = 1 (fills the tail of a hole
whose content is shorter than the hole; see masking.py), `<|eos|>` = 2 (end of a file), `<|bos|>` = 3,
and `<|expand|>` = 4 (reserved for expand/delete variable-length decoding as in DreamOn).

Encoding text never produces them, not even for a file that contains the string "<|mask|>": only
the engine places them, by id. (A user's file quoting the literal would otherwise turn into a hole.)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import Regex, Tokenizer as HFTokenizer, decoders, models, pre_tokenizers, trainers

from diffucode.errors import CheckpointError

SPECIAL_TOKENS = ("<|mask|>", "<|pad|>", "<|eos|>", "<|bos|>", "<|expand|>")

# Splits before BPE: words with one leading space, numbers in groups of up to 3 digits, runs of
# punctuation, newlines together with the indentation that follows them kept apart from words,
# so indentation levels become single tokens. (The widely used cl100k-style split pattern.)
_SPLIT = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


class Tokenizer:
    """A thin, typed wrapper over `tokenizers.Tokenizer` that knows the special ids."""

    def __init__(self, hf: HFTokenizer):
        self.hf = hf
        ids = {tok: hf.token_to_id(tok) for tok in SPECIAL_TOKENS}
        if ids["<|mask|>"] is None:
            raise CheckpointError("tokenizer has no <|mask|> token: not a diffucode tokenizer")
        self.mask_id: int = ids["<|mask|>"]
        self.pad_id: int | None = ids["<|pad|>"]
        self.eos_id: int | None = ids["<|eos|>"]
        self.bos_id: int | None = ids["<|bos|>"]
        self.expand_id: int | None = ids["<|expand|>"]
        self.special_ids: frozenset[int] = frozenset(i for i in ids.values() if i is not None)
        hf.encode_special_tokens = True  # "<|mask|>" in a text is text (split like any other), not the mask

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def train(cls, texts: Iterable[str], *, vocab_size: int = 16384, min_frequency: int = 2) -> "Tokenizer":
        """Train a byte-level BPE on an iterator of source texts."""
        hf = HFTokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(_SPLIT), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        hf.train_from_iterator(_as_iter(texts), trainer=trainer)
        return cls(hf)

    @classmethod
    def from_file(cls, path: str | Path) -> "Tokenizer":
        try:
            return cls(HFTokenizer.from_file(str(path)))
        except (OSError, ValueError, json.JSONDecodeError, Exception) as exc:  # tokenizers raises plain Exception
            if isinstance(exc, CheckpointError):
                raise
            raise CheckpointError(f"cannot read tokenizer {path}: {exc}") from exc

    def save(self, path: str | Path) -> None:
        self.hf.save(str(path))

    # -- use ------------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.hf.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`, special tokens dropped (a decoded hole never contains <|mask|> or <|pad|>)."""
        return self.hf.decode([int(i) for i in ids if int(i) not in self.special_ids], skip_special_tokens=False)


def _as_iter(texts: Iterable[str]) -> Iterator[str]:
    yield from texts
