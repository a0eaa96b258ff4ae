"""The thin adapter from the diffucode engine to the harness's ``generate(task, sample_index) -> str``.

Every front end goes through ``diffucode.infill`` (ARCHITECTURE.md); nothing here masks, samples or
validates. The engine is imported lazily, on first use, so the harness and its tests run without it.
"""

from __future__ import annotations

import zlib
from typing import Any, Sequence

from diffucode.settings import add_flags

from .data import Task
from .prompts import PromptStyle, build_prompt


# The sampling settings `diffucode eval` offers, in its --help order. Their types and help come from
# diffucode.settings (the CLI's and the language server's too); a note says what differs in an eval.
MODEL_KNOBS: tuple[str, ...] = (
    "steps", "temperature", "candidates", "retries", "seed", "max_new_tokens", "strategy", "threshold", "entropy_bound",
    "cache_refresh", "exact", "length_mode", "position_temperature", "cfg_scale", "max_lines",
    "context", "drafts", "refine_below", "retrieval_weight", "min_match",
)
_EVAL_NOTES = {
    "temperature": "; use > 0 with --n-samples > 1",
    "seed": "; sample i of a task uses a seed derived from (seed, task id, i)",
    "candidates": "; the model's best valid one is the sample (its own score, never the tests)",
    "max_lines": "; infill tasks only",
    "context": "; here the default is none (a benchmark measures the model); infill tasks only: repo takes drafts "
               "from --workspace and the task's own text, file from the task's text",
}


def add_knob_flags(group) -> None:
    """One flag per model knob on an argparse parser or group (`diffucode eval`'s generation flags)."""
    add_flags(group, only=MODEL_KNOBS, notes=_EVAL_NOTES, unset="engine default if unset")


class ModelGenerator:
    """Generates completions with a diffucode engine.

    complete tasks: ``complete`` at the end of the prompt. infill tasks: ``infill`` of an empty span
    between prompt and suffix. program tasks (MBPP): ``infill`` of an empty span at the end of the
    formatted prompt (bigcode docstring or 3-shot text).
    A sample for which the engine finds no valid candidate yields "" (it then fails its tests).
    """

    def __init__(self, model: str | None = None, *, device: str = "cpu", prompt_style: PromptStyle = "bigcode",
                 fewshot: Sequence[Task] = (), load_options: dict | None = None, preset: str | None = None,
                 workspace: str | None = None, **knobs: Any):
        self.model = model
        self.device = device
        self.load_options = dict(load_options or {})  # load_engine's quantize / compile / dtype / family / ...
        self.preset = preset  # a family preset (families.FAMILY_PRESETS) or "auto": the loaded model's
        self.prompt_style = prompt_style
        self.fewshot = tuple(fewshot)
        self.knobs = {k: v for k, v in knobs.items() if v is not None}
        unknown = set(self.knobs) - set(MODEL_KNOBS)
        if unknown:
            raise TypeError(f"unknown model knob(s): {sorted(unknown)}")
        self.name = model or "embedded"
        self.workspace = workspace  # a folder whose files the infill tasks' drafts come from
        self._context = None
        self._engine = None
        self._api = None

    def check(self) -> None:
        """Fail now, in one line, on a model that is not there or not a model folder (the engine itself is
        loaded on first use, after the run folder exists; the CLI calls this before making it)."""
        from diffucode.loading import check_model  # lazy: torch

        check_model(self.model, family=self.load_options.get("family"))

    def _load(self):
        if self._engine is None:
            from diffucode.infill import InfillSettings, complete  # lazy: torch and weights
            from diffucode.loading import load_engine
            from diffucode.refine import infill_in_context

            self._api = (InfillSettings, complete, infill_in_context)
            self._engine = load_engine(self.model, device=self.device, **self.load_options)
            if self.preset:
                from diffucode import families

                name = self._engine.meta.get("preset") if self.preset == "auto" else self.preset
                if name:  # the preset under the knobs given explicitly
                    self.knobs = families.preset_settings(name, **self.knobs)
        return self._engine

    def seed_for(self, task: Task, sample_index: int) -> int:
        """A distinct, reproducible seed per (task, sample): samples differ even without --seed."""
        base = self.knobs.get("seed", 0)
        return (base * 1_000_003 + zlib.crc32(task.task_id.encode()) + sample_index) % (2**31 - 1)

    def __call__(self, task: Task, sample_index: int) -> str:
        engine = self._load()
        InfillSettings, complete, infill_in_context = self._api
        settings = InfillSettings(**{"context": "none", **self.knobs, "seed": self.seed_for(task, sample_index)})
        if task.kind == "infill":
            source = task.prompt + task.suffix
            at = len(task.prompt)
            result = infill_in_context(engine, source, [(at, at)], settings, self._drafts_for(source, settings))
        elif task.kind == "complete":
            # At the end of a docstring-only def, `complete` picks a block_body hole (syntax.py).
            source = build_prompt(task)
            result = complete(engine, source, len(source), settings)
        else:
            # A whole program after a prompt: `complete` would size the hole as one statement, so insert
            # an open-ended hole at the end instead (its size comes from max_new_tokens / length mode).
            source = build_prompt(task, style=self.prompt_style, fewshot=self.fewshot)
            result = infill_in_context(engine, source, [(len(source), len(source))], settings, None)
        best = result.best
        if best is None or not best.edits:
            return ""
        return best.edits[0].text


    def _drafts_for(self, source: str, settings):
        """Drafts of an infill task's hole: from the workspace (indexed once) and the task's own text."""
        if settings.context == "none":
            return None
        if self._context is None:
            from diffucode.context import RepoContext
            from diffucode.workspace import Workspace

            ws = Workspace(self.workspace) if self.workspace and settings.context == "repo" else None
            self._context = RepoContext(ws, mode=settings.context)
        return lambda start, end: self._context.drafts(None, source, start, end, k=settings.drafts)


__all__ = ["MODEL_KNOBS", "ModelGenerator", "add_knob_flags"]
