"""The model card (README.md) that export writes beside the weights: what the model is, its data, how it
was trained (every call, on which devices, and the models it started from), and its held-out numbers.
"""

from __future__ import annotations

from pathlib import Path

from diffucode import checkpoint


def model_card(ck, state: dict, run: dict, index: dict) -> str:
    mc = ck.model.cfg
    ev = state.get("last_eval", {})
    stats = index.get("stats", {})
    corpus = index.get("corpus", {})
    tr = stats.get("train", {})
    rows = "\n".join(f"| {k} | {v} |" for k, v in ev.items())
    n_tokens, source_mb = millions(tr.get("tokens")), millions(tr.get("bytes"))
    seen, trained = millions(state.get("tokens")), minutes(state.get("train_seconds"))
    devices, n_calls = " and ".join(training_devices(state)) or "?", state.get("calls", 1)
    sources = ", ".join(map(portable, corpus.get("sources", []))) or "the training machine"
    return f"""# diffucode default model
{cpu_status(state, run)}
A small bidirectional transformer trained from scratch as a masked-diffusion code model by
`diffucode train` (docs/training.md). It fills holes in Python code: the infill engine gives it a hole
of L masks, and it writes the content followed by a contiguous tail of `<|pad|>` (config.json
`infill.pad_tail`), so the length of the infill is the model's decision.

## Model
| field | value |
|---|---|
| parameters | {ck.model.num_params() / 1e6:.1f} M |
| width x depth x heads | {mc.d_model} x {mc.n_layers} x {mc.n_heads} |
| vocabulary | {mc.vocab_size} (byte-level BPE) |
| context | {mc.max_seq_len} tokens |
| weights | float16 safetensors |

## Data
{tr.get('docs', '?')} training files, {n_tokens} M tokens, {source_mb} MB of source from
{sources}; deduplicated by content, filtered (tiny, huge,
minified, generated, non-UTF-8), {_decontamination(corpus)}
(rejected: {corpus.get('rejected', {})}).
Held out: {stats.get('heldout', {}).get('docs', '?')} files by a hash of their path.

## Training
{state['step']} steps, {seen} M tokens seen, {trained} min of training
on {devices} over {n_calls} call(s). Objective (diffucode/training/masking.py): uniform masking with 1/t weights,
variable-length infill holes (span + random pads, or a menu size drawn before the span), function
bodies as a hole at the end.

## Measured (held-out files, step {ev.get('step', '?')})
| metric | value |
|---|---|
{rows}

elbo_bpt / elbo_bpb: ELBO bound in bits per token / per byte; ce_tXX_bpt: masked cross-entropy at
masking rate t; infill_oracle_exact / infill_auto_exact: exact single-line infills with the true
length / a 32-position hole ending in pads; infill_auto_len_ok: share with exactly the right length.

## Reproduce
{_reproduce(state, run)}
{lineage_text(run.get("init_from"))}"""


def cpu_status(state: dict, run: dict) -> str:
    """A warning at the top of the card of a model trained only on CPUs (the interim embedded model):
    every call that trained it, those of the models it started from (--init-from) included."""
    devices = set(training_devices(state))
    for init in _generations(run.get("init_from")):
        devices.update(c["device"] for c in init.get("commands") or [] if c.get("device"))
    if not devices or not all(d.endswith("cpu") for d in devices):
        return ""
    return (f"\n{checkpoint.INTERIM_MARKER} This model was trained on a CPU, so it is small and briefly trained; "
            "its measured numbers are below. Pass `--model` to use a stronger one (docs/models.md).\n")


def _generations(init: dict | None):
    """The models a run started from (run.json `init_from`), nearest first."""
    while init:
        yield init
        init = init.get("init_from")


def training_devices(state: dict) -> list[str]:
    """The devices this run's calls trained on, in order of first use (the last call's alone for a
    checkpoint written before calls recorded theirs)."""
    found = [c["device"] for c in state.get("commands") or [] if c.get("device")]
    return list(dict.fromkeys(found or ([state["device"]] if state.get("device") else [])))


def millions(n: float | None) -> str:
    """A count in millions for the card; '?' where the number was not recorded (not a misleading 0.0)."""
    return "?" if n is None else f"{n / 1e6:.1f}"


def minutes(seconds: float | None) -> str:
    return "?" if seconds is None else f"{seconds / 60:.1f}"


LINEAGE_KEYS = ("steps", "tokens_seen", "train_seconds", "commands", "command", "init_from")


def lineage(folder: str | Path, config: dict) -> dict:
    """What a run started with --init-from keeps of the starting model's own training (config.json
    `training`; nested when that model was itself started from another), so the card can list it."""
    training = config.get("training") or {}
    return {"folder": str(folder), **{k: training[k] for k in LINEAGE_KEYS if k in training}}


def lineage_text(init: dict | None) -> str:
    """The card's account of the models this one was started from (--init-from), newest first."""
    parts = []
    for gen in _generations(init):
        calls = gen.get("commands") or ([{"step": 0, "argv": gen["command"]}] if gen.get("command") else [])
        head = (f"It started from the weights of `{gen.get('folder', '?')}`, trained {gen.get('steps', '?')} steps "
                f"({millions(gen.get('tokens_seen'))} M tokens, {minutes(gen.get('train_seconds'))} min)")
        if calls:
            lines = [f"# call {n} of {len(calls)}, from step {c['step']}\n" + " ".join(c["argv"])
                     for n, c in enumerate(calls, 1)]
            parts.append(head + " by:\n```\n" + "\n".join(lines) + "\n```")
        else:
            parts.append(head + "; its training commands were not recorded.")
    return ("\n" + "\n\n".join(parts) + "\n") if parts else ""


def _decontamination(corpus: dict) -> str:
    n = corpus.get("decontamination_ngrams", 0)
    if not n:
        return "NOT decontaminated against HumanEval/MBPP (decontamination was off when the data was built)"
    return f"decontaminated against HumanEval/MBPP(+) programs ({n} line 3-grams)"


def portable(arg: str) -> str:
    """A recorded command-line argument without the training machine's own paths: the home folder as
    `~`, another absolute path as its last two parts (`.../shared/data`)."""
    home = str(Path.home())
    if arg == home or arg.startswith(home + "/"):
        return "~" + arg[len(home):]
    parts = Path(arg).parts
    return ".../" + "/".join(parts[-2:]) if arg.startswith("/") and len(parts) > 3 else arg


def _reproduce(state: dict, run: dict) -> str:
    """The card's list of training calls, in order, with the step each one started from."""
    calls = state.get("commands") or ([{"step": 0, "argv": run["command"]}] if run.get("command") else [])
    if not calls:
        return "The training commands were not recorded."
    lines = []
    for n, c in enumerate(calls, 1):
        lines += [f"# call {n} of {len(calls)}, from step {c['step']}", " ".join(map(portable, c["argv"]))]
    missing = state.get("calls", len(calls)) - len(calls)
    note = (f"\n(At least {missing} more call(s) ran before calls were recorded; they are not listed.)"
            if missing > 0 else "")
    return ("Every call of this run, in order, with the step it started from; each call resumed the run folder where "
            "the previous one stopped (config.json `training.commands`):\n```\n" + "\n".join(lines) + "\n```" + note)
