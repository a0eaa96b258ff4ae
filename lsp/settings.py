"""Server settings: what `initializationOptions` and `workspace/didChangeConfiguration` may set.

Keys are camelCase (`maxNewTokens`); snake_case is accepted too. The generation knobs are the fields
of `diffucode.settings.InfillSettings`, read and written by that module's JSON helpers (help text from
the fields, so CLI, LSP and docs say the same thing); the rest are server knobs listed in `SERVER_HELP`,
checked by the same per-field helper. A settings object may be nested under a "diffucode" key (VS Code
style). Updates are partial: keys not given keep their current value.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from typing import Any

from diffucode.denoiser import COMPILE_MODES
from diffucode.devices import resolve_device
from diffucode.errors import ConfigError
from diffucode.settings import SETTINGS_HELP, InfillSettings, camel, field_from_json, snake
from diffucode.settings import from_json as generation_overrides  # request options and the "inline" object
from diffucode.settings import to_json as generation_json

SECTION = "diffucode"

SERVER_HELP = {
    "model": "model folder, hub id, or null / \"default\" for the embedded model",
    "device": "torch device for inference: cpu, cuda, cuda:1, ...",
    "quantize": "\"auto\": int8 linear layers where they measure faster on this CPU when the model loads "
                "(the choice is in diffucode/status); "
                "\"int8\": always; null or \"none\": never",
    "compile": "torch.compile mode for diffucode's own models: \"none\", \"default\", \"reduce-overhead\" "
               "(CUDA graphs) or \"max-autotune\"; compiling happens while the model loads",
    "threads": "CPU threads torch may use for inference (null: half the cores, at least 1)",
    "debounce_ms": "wait this long after an inline-completion request before generating; "
                   "a newer request for the same document supersedes it",
    "inline_enabled": "answer textDocument/inlineCompletion (false: always empty)",
    "inline": "generation settings that apply to inline completion only, e.g. {\"steps\": 4} (default: "
              "{\"drafts\": 2}, fast enough for typing)",
    "stream": "send diffucode/denoiseStep notifications with the hole's intermediate text during selection jobs",
    "preload": "load the model right after `initialized` instead of on first use",
    "rewrite_fraction": "share of a selection's tokens that \"Rewrite selection\" re-predicts",
    "repair_below": "\"Repair low-confidence tokens\" re-predicts tokens whose probability is below this",
    "snap_selection": "widen a selection to whole syntax nodes before infilling it",
    "window_chars": "characters of context taken on each side of the hole (0: the whole document)",
    "max_file_chars": "larger documents are refused",
}


@dataclass(frozen=True)
class ServerSettings:
    model: str | None = None
    device: str = "cpu"
    quantize: str | None = "auto"
    compile: str = "none"
    threads: int | None = None
    debounce_ms: int = 150
    inline_enabled: bool = True
    # InfillSettings overrides (snake_case keys, validated). Two drafts keep inline completion's p50 within
    # 150 ms on a 2-core CPU with context on (docs/context.md); four, the default elsewhere, do not.
    inline: dict = field(default_factory=lambda: {"drafts": 2})
    stream: bool = True
    preload: bool = False
    rewrite_fraction: float = 0.3
    repair_below: float = 0.1
    snap_selection: bool = False
    window_chars: int = 16_000
    max_file_chars: int = 2_000_000
    generation: InfillSettings = field(default_factory=lambda: InfillSettings(language=None))

    def infill_settings(self, language: str | None, overrides: dict | None = None, *,
                        inline: bool = False) -> InfillSettings:
        """The generation settings for one job: base, then inline overrides, then per-request ones.

        `language` (from the document) applies unless the user set one explicitly."""
        s = self.generation
        if inline and self.inline:
            s = replace(s, **self.inline)
        if overrides:
            s = replace(s, **overrides)
        if s.language is None:
            s = replace(s, language=language)
        if s.length and s.length_mode == "auto":
            s = replace(s, length_mode="fixed")
        s.check()
        return s

    def load_options(self) -> dict:
        """What load_engine needs beyond model and device (only non-default values)."""
        out = {}
        if self.quantize not in (None, "none"):
            out["quantize"] = self.quantize
        if self.compile != "none":
            out["compile"] = self.compile
        return out

    def to_json(self) -> dict:
        out = {camel(f.name): getattr(self, f.name)
               for f in dataclasses.fields(self) if f.name not in ("generation", "inline")}
        out["inline"] = {camel(k): v for k, v in self.inline.items()}
        out.update(generation_json(self.generation))
        return out


# -- parsing ----------------------------------------------------------------------------------------
_SERVER_FIELDS = {f.name: f for f in dataclasses.fields(ServerSettings) if f.name != "generation"}
_GEN_FIELDS = {f.name: f for f in dataclasses.fields(InfillSettings)}


def unwrap(raw: Any) -> Any:
    """A settings object possibly nested under "diffucode" (VS Code's configuration sections)."""
    if isinstance(raw, dict) and isinstance(raw.get(SECTION), dict):
        return raw[SECTION]
    return raw


def merge(current: ServerSettings, raw: Any) -> tuple[ServerSettings, list[str]]:
    """Apply a (partial) settings object; returns the new settings and warnings about ignored keys.

    Raises ConfigError (and changes nothing) when a known key has a bad value."""
    raw = unwrap(raw)
    if raw is None:
        return current, []
    if not isinstance(raw, dict):
        raise ConfigError(f"settings must be an object, got {type(raw).__name__}")
    server, gen, warnings = {}, {}, []
    for key, value in raw.items():
        name = snake(key)
        if name in _SERVER_FIELDS:
            v = field_from_json(_SERVER_FIELDS[name], value)
            if name == "inline":
                v = generation_overrides(v, where="inline")
            server[name] = v
        elif name in _GEN_FIELDS:
            gen[name] = field_from_json(_GEN_FIELDS[name], value)
        else:
            warnings.append(f"unknown setting {key!r} ignored")
    new = replace(current, **server)
    if gen:
        new = replace(new, generation=replace(new.generation, **gen))
    _check(new)
    return new, warnings


def _check(s: ServerSettings) -> None:
    if s.model is not None and not s.model.strip():
        raise ConfigError("setting 'model' is empty; use null for the embedded model")
    if s.debounce_ms < 0 or s.debounce_ms > 10_000:
        raise ConfigError("setting 'debounceMs' must be between 0 and 10000")
    if not 0 < s.rewrite_fraction <= 1:
        raise ConfigError("setting 'rewriteFraction' must be in (0, 1]")
    if not 0 < s.repair_below < 1:
        raise ConfigError("setting 'repairBelow' must be in (0, 1)")
    if s.quantize not in (None, "none", "int8", "auto"):
        raise ConfigError("setting 'quantize' must be \"auto\", \"int8\", \"none\" or null")
    if s.compile not in COMPILE_MODES:
        raise ConfigError(f"setting 'compile' must be one of {', '.join(COMPILE_MODES)}")
    if s.quantize == "int8" and s.compile != "none":
        raise ConfigError("settings 'compile' and 'quantize' do not combine; choose one")
    resolve_device(s.device)  # an unknown device, or a GPU that is not here: refused now, not at the first request
    if s.threads is not None and s.threads < 1:
        raise ConfigError("setting 'threads' must be ≥ 1 (or null)")
    if s.window_chars < 0 or s.max_file_chars < 1:
        raise ConfigError("settings 'windowChars' must be ≥ 0 and 'maxFileChars' ≥ 1")
    s.infill_settings("python")  # InfillSettings.check() on base + inline overrides
    s.infill_settings("python", inline=True)


def describe() -> list[tuple[str, str, Any]]:
    """(camelCase key, help, default) for every setting: the table in docs/lsp.md."""
    d = ServerSettings()
    rows = [(camel(n), SERVER_HELP[n], getattr(d, n)) for n in _SERVER_FIELDS]
    gen = generation_json(d.generation)
    rows += [(camel(n), SETTINGS_HELP[n], gen[camel(n)]) for n in _GEN_FIELDS]
    return rows
