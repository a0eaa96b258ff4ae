"""The held-out estimator of the masked-diffusion ELBO, shared by training's evaluation (evaluator.py)
and the comparison of models on the same text (diffucode eval's held-out bits per byte).

Each of two passes draws one masking rate per row, stratified over the rows (t_i = (i + 0.5 + k/2) / N
mod 1, at least eps), masks every real token with probability t_i, and takes the cross-entropy of the
masked tokens weighted 1/t_i (MDLM, Sahoo et al. 2024; LLaDA): summed over positions and averaged over
the two passes, the negative ELBO in nats.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn


def masked_ce(model: nn.Module, ids: torch.Tensor, masked: torch.Tensor, *, mask_id: int, micro: int,
              device: torch.device | str = "cpu", amp=contextlib.nullcontext()) -> torch.Tensor:
    """(N, T) cross-entropy (nats, on the CPU) of the masked positions of `ids` (N, T), 0 elsewhere; the
    model sees `micro` rows at a time on `device`, inside the context manager `amp`."""
    res = torch.zeros(ids.shape)
    for s in range(0, len(ids), micro):
        x = ids[s : s + micro].to(device)
        m = masked[s : s + micro].to(device)
        with amp:
            logits = model(torch.where(m, mask_id, x))  # (b, T, V)
        ce = F.cross_entropy(logits.float().transpose(1, 2), x, reduction="none")  # (b, T)
        res[s : s + micro] = (ce * m).cpu()
    return res


def elbo_terms(model: nn.Module, ids: torch.Tensor, real: torch.Tensor, *, mask_id: int, eps: float,
               generator: torch.Generator, micro: int, device: torch.device | str = "cpu",
               amp=contextlib.nullcontext()) -> list[torch.Tensor]:
    """The two stratified passes over the rows `ids` (N, T), whose real tokens are `real` (N, T; pads are
    neither masked nor counted): per pass, the (N, T) cross-entropy / t of the masked positions (0
    elsewhere). Their total over both passes / 2 is the negative ELBO of the rows in nats. Draws one
    `torch.rand(ids.shape)` per pass from `generator`."""
    N = len(ids)
    terms = []
    for k in range(2):  # two stratified passes of t over the rows
        t = (((torch.arange(N) + 0.5 + k / 2) / N) % 1.0).clamp(min=eps)
        masked = (torch.rand(ids.shape, generator=generator) < t[:, None]) & real
        ce = masked_ce(model, ids, masked, mask_id=mask_id, micro=micro, device=device, amp=amp)
        terms.append(ce / t[:, None])
    return terms
