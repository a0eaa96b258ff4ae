"""Rewrite a span by instruction ("add type hints", "make it iterative") with an instruct checkpoint.

The prompt is the checkpoint's own chat template (families.instruction_prompt): the instruction and
the span's code as the user turn, the assistant turn opened. The answer is a run of masks after it,
denoised like any hole; it may end early with the model's end-of-turn, end-of-text or pad tokens
(kept a contiguous tail by the sampler). The code of the answer — the first fenced block if there is
one, else the whole answer — replaces the span, validated like any infill.

Models without a chat template (base checkpoints, diffucode's own models) refuse with ConfigError.
"""

from __future__ import annotations

import re
import time
from dataclasses import replace

import torch

from diffucode import families
from diffucode.errors import SpanError
from diffucode.infill import (
    Candidate,
    Edit,
    InfillResult,
    InfillSettings,
    OnStep,
    ShouldStop,
    fit_to_file,
    Layout,
    sample_layout,
    hole_tail_ids,
    validated,
    finish,
    apply_edits,
    check_spans,
)
from diffucode.engine import Engine

END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>")  # Qwen (Dream family), LLaMA 3 (LLaDA), Gemma
_FENCE = re.compile(r"```[^\n`]*\n(.*?)(?:\n```|\Z)", re.S)


def instruct(
    engine: Engine,
    source: str,
    span: tuple[int, int],
    instruction: str,
    settings: InfillSettings = InfillSettings(),
    *,
    on_step: OnStep | None = None,
    should_stop: ShouldStop | None = None,
) -> InfillResult:
    """Replace `source[span]` with the model's answer to `instruction` about it (an empty span: write new code).

    The answer has room for `settings.max_new_tokens` tokens, and at least twice the span's own tokens
    plus 32 (an answer restates the code), within the model's context. The best valid candidate comes first.
    """
    settings.check()
    engine.require("instruct")
    if not instruction.strip():
        raise SpanError("the instruction is empty")
    (s, e), = check_spans(source, [span])
    t0 = time.perf_counter()
    prompt = engine.tokenizer.encode(families.instruction_prompt(engine, instruction, source[s:e]))
    den = engine.denoiser
    own = len(engine.tokenizer.encode(source[s:e]))
    n = max(settings.max_new_tokens, min(2 * own + 32, den.max_seq_len - len(prompt)))
    if len(prompt) + n > den.max_seq_len:
        raise SpanError(f"the instruction, the code and a {n}-token answer need more than the model's "
                        f"{den.max_seq_len}-token context")
    stops = {i for i in (engine.tokenizer.token_id(t) for t in END_OF_TURN) if i is not None}
    tails = sorted(hole_tail_ids(den) | stops)
    layout = Layout(prompt, [], [], [n])
    ids = torch.tensor(prompt + [den.mask_id] * n, device=den.device)[None].repeat(settings.candidates, 1)
    out = sample_layout(engine, ids, replace(settings, length_mode="pad"), on_step, should_stop, layout, [n],
                  tail_ids=tails, allow_ids=sorted(stops))  # end-of-turn ids are control tokens
    cands: dict[str, Candidate] = {}
    P = len(prompt)
    old = source[s:e]
    trailing = old[len(old.rstrip("\r\n")) :].replace("\r\n", "\n")  # the span's own blank lines after its code
    for r in range(ids.size(0)):
        toks = out.ids[r, P:].tolist()
        k = next((i for i, t in enumerate(toks) if t in tails), n)
        code = answer_code(engine.tokenizer.decode(toks[:k]))
        text = fit_to_file(code + trailing if code else code, source, (s, e))
        score = float(out.logprobs[r, P : P + min(k + 1, n)].mean())
        cand = validated(source, [Edit(s, e, text)], score, k, settings)
        cands.setdefault(apply_edits(source, cand.edits), cand)
    return finish("fill", source, cands.values(), settings, forwards=out.forwards, t0=t0, hole_tokens=(n,))


def answer_code(answer: str) -> str:
    """The code in a chat answer: the first fenced block's body, else the answer without surrounding blank lines."""
    m = _FENCE.search(answer)
    code = m.group(1) if m else answer
    return code.strip("\n")
