"""Training's fixed held-out measurements, taken at the start, every --eval-every steps and at the end:
the ELBO (bits/token, bits/byte; elbo.py), masked cross-entropy at fixed masking rates, and a single-line
infill check with the true length (oracle) and with a fixed 32-position hole (auto).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from diffucode.model import DiffusionTransformer
from diffucode.tokenizer import Tokenizer
from diffucode.training.config import TrainConfig
from diffucode.training.elbo import elbo_terms, masked_ce
from diffucode.training.masking import MaskingConfig, heldout_windows
from diffucode.training.token_store import TokenStore


class Evaluator:
    """Fixed held-out measurements: ELBO (bits/token, bits/byte), masked CE at fixed t, and a
    single-line infill check with the true length (oracle) and with a fixed 32-position hole (auto)."""

    def __init__(self, store: TokenStore, tok: Tokenizer, byte_len: np.ndarray, ends_line: np.ndarray, cfg: TrainConfig,
                 mcfg: MaskingConfig, device: torch.device, micro: int):
        self.tok, self.cfg, self.device, self.micro = tok, cfg, device, max(1, micro)
        toks, real = heldout_windows(store, cfg.seq_len, cfg.eval_rows, pad=tok.pad_id)
        self.toks, self.real = torch.from_numpy(toks), torch.from_numpy(real)
        self.bytes = float(byte_len[toks[real]].sum())
        self.eps = mcfg.eps
        self.infill = self._infill_cases(toks, real, ends_line, cfg.infill_rows)

    def _infill_cases(self, toks, real, ends_line, n) -> list[tuple[int, int, int]]:
        """(row, a, b): one whole line of 2..24 tokens in the middle half of each window."""
        rng = np.random.default_rng(7)
        T = toks.shape[1]
        cases = []
        for i in range(len(toks)):
            if len(cases) >= n or not real[i].all():
                continue
            starts = 1 + np.flatnonzero(ends_line[toks[i]])
            starts = starts[(starts >= T // 4) & (starts < 3 * T // 4)]
            pairs = [(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:]) if 2 <= b - a <= 24
                     and self.tok.decode(toks[i, a:b].tolist()).strip()]
            if pairs:
                cases.append((i, *pairs[int(rng.integers(0, len(pairs)))]))
        return cases

    @torch.no_grad()
    def run(self, model: DiffusionTransformer, amp) -> dict:
        was_training = model.training
        model.eval()
        out: dict = {}
        gen = torch.Generator().manual_seed(1234)
        ntok = float(self.real.sum())
        nats = sum(float(term.sum()) for term in elbo_terms(model, self.toks, self.real, mask_id=self.tok.mask_id,
                                                            eps=self.eps, generator=gen, micro=self.micro,
                                                            device=self.device, amp=amp))
        elbo = nats / 2 / max(ntok, 1)
        out["elbo_bpt"] = elbo / math.log(2)
        out["elbo_bpb"] = nats / 2 / math.log(2) / max(self.bytes, 1)
        for t in (0.15, 0.5, 0.85):
            m = (torch.rand(self.toks.shape, generator=gen) < t) & self.real
            ce = self._ce(model, amp, m)
            out[f"ce_t{int(t * 100):02d}_bpt"] = float(ce.sum()) / max(int(m.sum()), 1) / math.log(2)
        if self.infill:
            out.update(self._infill(model, amp))
        if was_training:
            model.train()
        return out

    def _ce(self, model, amp, m: torch.Tensor) -> torch.Tensor:
        """(N, T) CE at masked positions (0 elsewhere)."""
        return masked_ce(model, self.toks, m, mask_id=self.tok.mask_id, micro=self.micro, device=self.device, amp=amp)

    def _infill(self, model, amp) -> dict:
        from diffucode.denoiser import NativeDenoiser  # noqa: PLC0415
        from diffucode.sampler import sample  # noqa: PLC0415

        den = NativeDenoiser(model, self.tok)
        tail = [i for i in (self.tok.pad_id, self.tok.eos_id) if i is not None]
        T = self.toks.shape[1]
        res = {}
        for name, fixed in (("oracle", None), ("auto", 32)):
            exact = length_ok = 0
            rows, truths, holes = [], [], []
            for i, a, b in self.infill:
                H = fixed or (b - a)
                row = torch.cat([self.toks[i, :a], torch.full((H,), self.tok.mask_id), self.toks[i, b:]])[:T]
                rows.append(row)
                truths.append(self.toks[i, a:b].tolist())
                holes.append((a, H))
            for s in range(0, len(rows), self.micro):
                ids = torch.stack(rows[s : s + self.micro]).to(self.device)
                with amp:
                    got = sample(den, ids, steps=max(h for _, h in holes[s : s + self.micro]), strategy="confidence",
                                 tail_ids=tail).ids.cpu()
                for r in range(len(ids)):
                    a, H = holes[s + r]
                    gen_toks = got[r, a : a + H].tolist()
                    n = next((j for j, x in enumerate(gen_toks) if x in tail), H)
                    truth = truths[s + r]
                    length_ok += n == len(truth)
                    exact += self.tok.decode(gen_toks[:n]).rstrip() == self.tok.decode(truth).rstrip()
            res[f"infill_{name}_exact"] = exact / len(rows)
            if fixed:
                res[f"infill_{name}_len_ok"] = length_ok / len(rows)
        return res
