"""A denoiser that 'knows' the answer: for tests of the infill pipeline that need exact outputs."""

from __future__ import annotations

import torch

from diffucode.engine import Engine


class ScriptedDenoiser:
    """Predicts `script` (a token list) from the start of every hole, then <|pad|>, with high confidence.

    A hole is a run of positions that are masks in the *first* call's input; later calls keep that layout.
    """

    def __init__(self, tokenizer, script_text: str, max_seq_len: int = 512):
        self.tok = tokenizer
        self.mask_id, self.pad_id, self.eos_id = tokenizer.mask_id, tokenizer.pad_id, tokenizer.eos_id
        self.vocab_size = tokenizer.vocab_size
        self.forbidden_ids = frozenset({tokenizer.mask_id, tokenizer.bos_id, tokenizer.expand_id})
        self.max_seq_len = max_seq_len
        self.cacheable = False
        self.expand_id = self.delete_id = None
        self.infill_frame = ((), ())
        self.device = torch.device("cpu")
        self.script = tokenizer.encode(script_text)
        self.calls = 0
        self._starts = None

    def logits(self, ids, positions=None):
        self.calls += 1
        B, T = ids.shape
        if self._starts is None or self._starts[0] != T:
            m = (ids[0] == self.mask_id).tolist()
            self._starts = (T, [i for i in range(T) if m[i] and (i == 0 or not m[i - 1])])
        starts = self._starts[1]
        out = torch.zeros(B, T, self.vocab_size + 3)  # wider than the vocab, like some public checkpoints
        for p in range(T):
            start = max((s for s in starts if s <= p), default=None)
            k = p - start if start is not None else 0
            tok = self.script[k] if k < len(self.script) else self.pad_id
            out[:, p, tok] = 20.0 - 0.01 * k
        if positions is not None:
            out = out.gather(1, positions[..., None].expand(-1, -1, out.size(-1)))
        return out


def scripted_engine(tokenizer, script_text: str, *, pad_tail: bool = True) -> Engine:
    return Engine(ScriptedDenoiser(tokenizer, script_text), tokenizer, name="scripted",
                  meta={"infill": {"pad_tail": pad_tail}})
