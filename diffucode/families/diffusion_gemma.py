"""DiffusionGemma (google/diffusiongemma-26B-A4B-it; native in transformers >= 5.23).

Not a masked-diffusion model: an autoregressive encoder caches the prompt, and a bidirectional decoder
denoises a canvas of `canvas_length` *uniformly random* tokens (no mask token), accepting the
lowest-entropy tokens each step (entropy-bound sampler), renoising the rest, stopping when the
canvas is stable and confident; canvases are then appended left to right. It never sees text after
the canvas. So, in diffucode's terms:

* complete (prefix -> continuation) maps onto transformers' own `generate`: `complete_by_continuation`;
* infill and rewrite do not map (a hole with a suffix after it, re-masking tokens inside text): the
  denoiser's `logits` raises ConfigError with that reason, so those commands fail with exit 2.

Settings that map: max_new_tokens, steps (-> max_denoising_steps), seed, candidates. The rest
(strategy, temperature, top_k/top_p, threshold, block_length) belong to our masked sampler; the
checkpoint's generation_config.json (entropy bound, temperature schedule t_max -> t_min, adaptive
stopping) governs DiffusionGemma's sampler instead.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from diffucode.continuation import PrefixOnly, complete_by_continuation
from diffucode.families import hf

MIN_TRANSFORMERS = (5, 23)
CONTEXT_CAP = 8192  # prompt + new tokens we allow by default (the config's 131 k is a RoPE limit)
NOT_MASKED = (
    "DiffusionGemma denoises a canvas of random tokens after a prompt; it has no mask token and never sees "
    "text after the canvas, so infill and rewrite do not apply to it: use `diffucode complete` (continuation)"
)


class CanvasDenoiser(PrefixOnly):
    """DiffusionGemma behind the Denoiser protocol's fields; `logits` refuses, `continuation` generates
    (transformers' generate denoises its own canvases: no cache of ours)."""

    def __init__(self, model, *, vocab_size: int, pad_id: int | None, eos_ids: list[int], bos_id: int | None,
                 forbidden_ids, max_seq_len: int):
        super().__init__(model, mask_id=-1, pad_id=pad_id, eos_ids=eos_ids, bos_id=bos_id, vocab_size=vocab_size,
                         forbidden_ids=forbidden_ids, max_seq_len=max_seq_len, refusal=NOT_MASKED)  # no mask token

    @torch.inference_mode()
    def continuation(self, prompt_ids: list[int], *, max_new_tokens: int, settings=None, seed: int = 0,
                     on_draft: Callable[[int, list[int]], None] | None = None) -> list[int]:
        """Token ids generated after `prompt_ids` by transformers' `generate`, cut before the first EOS/pad.

        Args:
            prompt_ids: the prompt, special tokens (bos) included.
            max_new_tokens: generated length cap (whole canvases are denoised, then cut).
            settings: InfillSettings; only `steps` applies (max denoising steps per canvas; None: the
                checkpoint's generation_config).
            seed: seeds torch's global RNG inside a forked RNG state (generate takes no generator).
            on_draft: called after every denoising step with (step, argmax draft ids); raise to cancel.
        """
        ids = torch.tensor([prompt_ids], dtype=torch.long, device=self.device)
        kwargs = {"max_new_tokens": max_new_tokens}
        steps = settings.steps if settings is not None else None
        if steps is not None:
            kwargs["max_denoising_steps"] = int(steps)
        streamer = _DraftStreamer(on_draft) if on_draft is not None else None
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            out = self.model.generate(ids, streamer=streamer, **kwargs)
        seq = out.sequences if hasattr(out, "sequences") else out
        new = seq[0, len(prompt_ids):len(prompt_ids) + max_new_tokens].tolist()
        stops = set(self.eos_ids) | ({self.pad_id} if self.pad_id is not None else set())
        cut = next((i for i, t in enumerate(new) if t in stops), len(new))
        return new[:cut]


class _DraftStreamer:
    """transformers streamer interface: `put` gets committed canvases, `put_draft` every denoising step."""

    def __init__(self, on_draft):
        self.on_draft = on_draft
        self.steps = 0

    def put(self, value) -> None:
        pass

    def put_draft(self, value) -> None:
        self.steps += 1
        self.on_draft(self.steps, value[0].tolist())

    def end(self) -> None:
        pass


def load(folder: Path, config: dict, *, device: torch.device, dtype: torch.dtype, trust_remote_code: bool = False):
    """(denoiser, tokenizer, meta) for a DiffusionGemma folder."""
    tf = hf.transformers(MIN_TRANSFORMERS)
    tok = hf.load_tokenizer(folder, trust_remote_code=trust_remote_code)
    model = hf.hf_load(tf.DiffusionGemmaForBlockDiffusion, folder, config=None, device=device, dtype=dtype)
    gen = model.generation_config
    eos = gen.eos_token_id if gen.eos_token_id is not None else tok.tok.eos_token_id
    eos_ids = [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]) if e is not None]
    pad_id = gen.pad_token_id if gen.pad_token_id is not None else tok.tok.pad_token_id
    text = config.get("text_config") or {}
    max_pos = int(text.get("max_position_embeddings") or CONTEXT_CAP)
    den = CanvasDenoiser(model, vocab_size=tok.vocab_size, pad_id=pad_id, eos_ids=eos_ids,
                         bos_id=tok.tok.bos_token_id, forbidden_ids=tok.control_ids - set(eos_ids),
                         max_seq_len=min(max_pos, CONTEXT_CAP))
    meta = {"infill": {"pad_tail": False}, "attention": "canvas (bidirectional) over a causal prompt cache",
            "supports": ["complete"],
            "not_supported": {"infill": NOT_MASKED, "rewrite": NOT_MASKED, "instruct": NOT_MASKED},
            "canvas_length": config.get("canvas_length"),
            "chat": False}  # its chat template exists, but instruction rewrites need masks: not offered
    return den, tok, meta


COMPLETE = complete_by_continuation  # declared on the engine (engine.Engine.complete): infill.complete calls it

__all__ = ["CanvasDenoiser", "COMPLETE", "load", "NOT_MASKED"]
