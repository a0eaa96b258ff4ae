"""The generation settings every front end shares (`InfillSettings`), their one-line help and their checks,
and the one helper per interface built from them: command-line flags (`add_flags`, `from_flags`) and
JSON settings (`to_json`, `from_json`, camelCase keys).

No torch here: the command line builds its flags from these fields, and `--help` or a bad value must
answer before the model's libraries load. The sampler and the guidance read their constants and
checks from here too.
"""

from __future__ import annotations

import math
import re
from dataclasses import Field, dataclass, field, fields
from typing import Any, Iterable, Mapping

from diffucode.errors import ConfigError

STRATEGIES = ("confidence", "margin", "entropy", "origin")
SCHEDULES = ("even", "linear", "rounded", "remask")  # how many masks each step commits (sampler.py)


def check_position_temperature(position_temperature: float | None) -> None:
    if position_temperature is not None and not (math.isfinite(position_temperature) and position_temperature >= 0):
        raise ConfigError("position_temperature must be a finite number ≥ 0")


def check_cfg_scale(cfg_scale: float) -> None:
    if not (math.isfinite(cfg_scale) and cfg_scale >= 0):
        raise ConfigError("cfg_scale must be a finite number ≥ 0")


LENGTH_MODES = ("auto", "pad", "search", "fixed", "expand")
CONTEXT_MODES = ("repo", "file", "none")
MAX_CANDIDATES = 64  # one batch in memory: rows × context × vocabulary logits


def setting(default: Any, help: str) -> Any:
    """A field of InfillSettings with its one line of help: the CLI flag's, `diffucode eval`'s and the
    language server's documentation (docs/lsp.md). The value's type is the field's annotation."""
    return field(default=default, metadata={"help": help})


RETRY_TEMPERATURE = 0.7  # the temperature of `retries` when none is set


@dataclass(frozen=True)
class InfillSettings:
    """Generation knobs shared by infill, rewrite and complete (the CLI has one flag per field)."""

    steps: int | None = setting(None, "denoising forward passes (default: one per 2 masked tokens)")
    strategy: str = setting("confidence", "which masks to commit first: " + ", ".join(STRATEGIES))
    schedule: str | None = setting(
        None, "how many masks each step commits (unset: the model's own, even for most): even (the same share "
              "each step, LLaDA), linear (the share 1 - s/t of the masks left on a linear time grid, Dream), "
              "rounded (the share 1/k of the masks left, k the steps left, rounded; dLLM) or remask (every step "
              "re-predicts the whole hole and masks again its least confident share, Open-dLLM's p2; it ignores "
              "threshold, blocks and pad tails)")
    temperature: float = setting(0.0, "0 picks the most likely token; higher samples more freely")
    top_k: int | None = setting(None, "sample only among the k most likely tokens")
    top_p: float | None = setting(None, "sample only from the smallest set of tokens with this much probability")
    threshold: float | None = setting(0.9, "parallel decoding: also commit every token at least this confident")
    entropy_bound: float | None = setting(  # Σ entropy − max ≤ this
        None, "parallel decoding: also commit the surest tokens while their summed entropy, less the largest, "
              "stays within this (nats)")
    early_stop: float | None = setting(
        None, "commit every remaining token once the predictions repeat the previous step's and each is at least "
              "this confident")
    block_length: int | None = setting(None, "fill the hole left to right in blocks of this many tokens")
    remask_below: float | None = setting(None, "re-predict committed tokens whose confidence was below this")
    position_temperature: float | None = setting(
        None, "draw which tokens to commit at random, the surer the likelier: softmax(score / this) "
              "(Dream's alg_temp; unset or 0: the surest first)")
    cfg_scale: float = setting(
        0.0, "classifier-free guidance: also run the model with the context masked and move away from that "
             "prediction by this much (LLaDA's cfg_scale; 0: off; twice the rows per forward)")
    candidates: int = setting(1, "candidates drawn in one batch; the best valid one wins")
    retries: int = setting(
        4, f"when no candidate is valid (a blank fill counts as none: it would delete code, or insert nothing), "
           f"draw this many more in one batch, sampled (at temperature {RETRY_TEMPERATURE} when temperature is 0); "
           f"not with validate off or length mode expand")
    seed: int = setting(0, "random seed (same seed, same output)")
    max_new_tokens: int = setting(64, "largest hole per span, in tokens")
    # auto: expand or pad if the model was trained for it, else search (infill.py)
    length_mode: str = setting("auto", "how the hole length is chosen: " + ", ".join(LENGTH_MODES))
    length: int | None = setting(None, "exact hole length in tokens (implies length mode fixed)")
    search_lengths: tuple[int, ...] | None = setting(None, "hole lengths the length search tries, comma-separated")
    validate: bool = setting(True, "reject candidates that break the syntax")  # syntax.py
    language: str | None = setting("python", "language for syntax checks (default: from the file extension)")
    context_tokens: int | None = setting(None, "tokens of surrounding code the model sees (default: its context)")
    cache_refresh: int | None = setting(  # 1 = exact; None = off
        4, "reuse the context's keys/values, recomputing everything every N steps, and score candidates against one "
          "cached context (faster, approximate)")
    exact: bool = setting(False, "the reference decoder: no threshold, entropy bound, early stop or cache (slower)")
    max_lines: int | None = setting(
        None, "infill keeps at most this many lines of each hole's text, cut after its newline "
              "(line-bounded decoding: 1 for a single-line hole)")
    allow_delete: bool = setting(  # guard.py
        False, "accept a result that deletes code: an empty fill of lines that held code, a rewrite that "
               "drops or merges lines (refused otherwise)")
    context: str = setting(  # context.py, refine.py
        "repo", "drafts of a hole retrieved from: repo (the file's project and the file itself), file (the file "
                "only), none (the model alone)")
    drafts: int = setting(4, "retrieved drafts per hole, each a candidate beside the model's own fill")
    refine_below: float | None = setting(
        None, "re-predict the draft tokens whose probability in place is below this (draft and refine; off by "
              "default: see docs/context.md)")
    retrieval_weight: float = setting(
        100.0, "ranking of drafts: the model's mean log-probability + this × the retrieval match (0..1)")
    min_match: float = setting(
        0.15, "drafts whose retrieval match (0..1) is below this are not offered (see docs/context.md)")
    context_prompt: bool = setting(
        False, "also put the retrieved snippets, commented and with their paths, before the file's text in the "
               "model's prompt (for long-context models; the file's nearest lines keep priority in the budget)")

    def check(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"unknown strategy {self.strategy!r}; choose from {', '.join(STRATEGIES)}")
        if self.schedule is not None and self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.schedule!r}; choose from {', '.join(SCHEDULES)}")
        if self.length_mode not in LENGTH_MODES:
            raise ConfigError(f"unknown length mode {self.length_mode!r}; choose from {', '.join(LENGTH_MODES)}")
        if self.steps is not None and self.steps < 1:
            raise ConfigError("steps must be ≥ 1")
        if not 1 <= self.candidates <= MAX_CANDIDATES:
            raise ConfigError(f"candidates must be between 1 and {MAX_CANDIDATES} (they are decoded as one batch)")
        if not 0 <= self.retries <= MAX_CANDIDATES:
            raise ConfigError(f"retries must be between 0 and {MAX_CANDIDATES} (they are decoded as one batch)")
        if self.max_new_tokens < 1:
            raise ConfigError("max_new_tokens must be ≥ 1")
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ConfigError("temperature must be a finite number ≥ 0")
        if self.cache_refresh is not None and self.cache_refresh < 1:
            raise ConfigError("cache_refresh must be ≥ 1")
        if self.threshold is not None and not 0.0 < self.threshold <= 1.0:
            raise ConfigError("threshold must be in (0, 1]")
        if self.entropy_bound is not None and not self.entropy_bound >= 0:  # NaN too
            raise ConfigError("entropy_bound must be ≥ 0")
        if self.early_stop is not None and not 0.0 < self.early_stop <= 1.0:
            raise ConfigError("early_stop must be in (0, 1]")
        if self.length_mode == "fixed" and not self.length:
            raise ConfigError("length_mode 'fixed' needs length ≥ 1")
        if self.max_lines is not None and self.max_lines < 1:
            raise ConfigError("max_lines must be ≥ 1")
        if self.context not in CONTEXT_MODES:
            raise ConfigError(f"unknown context {self.context!r}; choose from {', '.join(CONTEXT_MODES)}")
        if not 0 <= self.drafts <= 32:
            raise ConfigError("drafts must be between 0 and 32")
        if self.refine_below is not None and not 0.0 < self.refine_below <= 1.0:
            raise ConfigError("refine_below must be in (0, 1]")
        if not (math.isfinite(self.retrieval_weight) and self.retrieval_weight >= 0):
            raise ConfigError("retrieval_weight must be a finite number ≥ 0")
        if not 0.0 <= self.min_match <= 1.0:  # NaN too
            raise ConfigError("min_match must be in [0, 1]")
        if self.length is not None and self.length < 1:
            raise ConfigError("length must be ≥ 1")
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError("top_k must be ≥ 1")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ConfigError("top_p must be in (0, 1]")
        if self.block_length is not None and self.block_length < 1:
            raise ConfigError("block_length must be ≥ 1")
        if self.remask_below is not None and not 0.0 < self.remask_below <= 1.0:
            raise ConfigError("remask_below must be in (0, 1]")
        check_position_temperature(self.position_temperature)
        check_cfg_scale(self.cfg_scale)
        if self.context_tokens is not None and self.context_tokens < 1:
            raise ConfigError("context_tokens must be ≥ 1")
        if not 0 <= self.seed < 2**63:
            raise ConfigError("seed must be in [0, 2^63)")
        if self.search_lengths is not None and (not self.search_lengths or min(self.search_lengths) < 1):
            raise ConfigError("search_lengths must be one or more lengths ≥ 1")



# One line of help per setting, read from the fields (the LSP's settings table prints it).
SETTINGS_HELP: dict[str, str] = {f.name: f.metadata["help"] for f in fields(InfillSettings)}


# -- command-line flags (diffucode infill / rewrite / complete, diffucode eval) ---------------------------
def _annotation(f: Field) -> tuple[str, bool]:
    """A field's value type ("int", "float", "str", "bool", "tuple[int, ...]", "dict", ...) and whether it
    may be None, from its annotation (a string under postponed evaluation)."""
    t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    parts = [p.strip() for p in t.split("|")]
    return parts[0], "None" in parts


def add_flags(parser, *, only: Iterable[str] | None = None, skip: Iterable[str] = (),
              notes: Mapping[str, str] | None = None, unset: str | None = None) -> None:
    """Add one `--kebab-case` flag per InfillSettings field to an argparse parser or argument group.

    Every flag defaults to None ("not given"), so `from_flags` returns only what the user typed.
    A bool field is a switch (`--no-NAME` when the field defaults to True); a tuple of ints is a
    comma-separated list. Args:
        only: these fields, in this order (default: every field, in declaration order).
        skip: fields left out.
        notes: text appended to a field's help (e.g. what differs in an eval).
        unset: appended to a valued flag's help as " (unset)": what happens when it is not given. Default:
            " (default: X)" with the field's default, unless the help already names one.
    """
    by_name = {f.name: f for f in fields(InfillSettings)}
    skipped = set(skip)
    notes = notes or {}
    for name in (only if only is not None else by_name):
        if name in skipped:
            continue
        f = by_name[name]
        flag = "--" + name.replace("_", "-")
        help_ = f.metadata["help"] + notes.get(name, "")
        kind, _ = _annotation(f)
        if kind == "bool":
            if f.default is True:
                parser.add_argument("--no-" + flag[2:], dest=name, action="store_false", default=None,
                                    help="do not " + help_)
            else:
                parser.add_argument(flag, action="store_true", default=None, help=help_)
        elif kind.startswith("tuple"):
            parser.add_argument(flag, type=lambda s: tuple(int(x) for x in s.split(",")), default=None, help=help_)
        else:
            if unset is not None:
                help_ += f" ({unset})"
            elif "(default" not in help_:  # the help says it better
                help_ += f" (default: {f.default})"
            parser.add_argument(flag, type={"int": int, "float": float}.get(kind, str), default=None, help=help_)


def from_flags(args) -> dict[str, Any]:
    """The settings given on a command line parsed with `add_flags` (field name → value; flags not given
    and fields without a flag are left out)."""
    return {f.name: v for f in fields(InfillSettings) if (v := getattr(args, f.name, None)) is not None}


# -- JSON settings (the language server's initializationOptions, configuration and request options) -------
def camel(name: str) -> str:
    """`max_new_tokens` → `maxNewTokens`: a field's JSON key."""
    head, *rest = name.split("_")
    return head + "".join(w.capitalize() for w in rest)


def snake(key: str) -> str:
    """`maxNewTokens` → `max_new_tokens` (a snake_case key stays as it is)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def field_from_json(f: Field, value: Any) -> Any:
    """Check one JSON value against a dataclass field's annotation; returns it as the field's type.
    A bad value raises ConfigError naming the setting's camelCase key. Works for any settings dataclass
    whose fields are bool, int, float, str, tuple of ints or dict, each optionally `| None`."""
    kind, optional = _annotation(f)
    key = camel(f.name)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"setting {key!r} cannot be null")
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"setting {key!r} must be true or false, got {value!r}")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ConfigError(f"setting {key!r} must be an integer, got {value!r}")
        return int(value)
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"setting {key!r} must be a number, got {value!r}")
        return float(value)
    if kind == "str":
        if not isinstance(value, str):
            raise ConfigError(f"setting {key!r} must be a string, got {value!r}")
        return value
    if kind.startswith("tuple"):
        ints = isinstance(value, (list, tuple)) and all(isinstance(x, int) and not isinstance(x, bool) for x in value)
        if not ints:
            raise ConfigError(f"setting {key!r} must be a list of integers, got {value!r}")
        return tuple(value)
    if kind == "dict":
        if not isinstance(value, dict):
            raise ConfigError(f"setting {key!r} must be an object, got {value!r}")
        return value
    raise ConfigError(f"setting {key!r} has an unsupported type {f.type}")  # pragma: no cover


def to_json(settings: InfillSettings) -> dict[str, Any]:
    """Every field under its camelCase key, JSON-ready (tuples as lists)."""
    return {camel(f.name): list(v) if isinstance(v := getattr(settings, f.name), tuple) else v
            for f in fields(InfillSettings)}


def from_json(raw: Any, *, where: str = "options") -> dict[str, Any]:
    """Validate a JSON object of InfillSettings fields (camelCase or snake_case keys) into snake_case
    overrides for `dataclasses.replace`. An unknown key or a bad value raises a one-line ConfigError
    naming `where`; the values' ranges are InfillSettings.check's job. None is no overrides."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be an object, got {type(raw).__name__}")
    by_name = {f.name: f for f in fields(InfillSettings)}
    out = {}
    for key, value in raw.items():
        name = snake(key)
        if name not in by_name:
            raise ConfigError(f"unknown generation setting {key!r} in {where}; known: {', '.join(map(camel, by_name))}")
        out[name] = field_from_json(by_name[name], value)
    return out
