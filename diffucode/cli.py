"""`diffucode` command line: infill, rewrite, complete, models (+ train, lsp, eval as plug-ins).

Coordinates: FILE:START-END are 1-based inclusive lines; FILE:LINE:COL is 1-based (COL counts
characters). They are converted to 0-based string offsets here and nowhere else.
Exit codes: 0 success; 1 no valid candidate; 2 usage or input error (one line on stderr); 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import re
import signal
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from diffucode.errors import ConfigError, DiffucodeError, InputFileError, NoValidCandidate, SpanError

EXIT_OK, EXIT_NO_CANDIDATE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


# -- files and ranges -------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class SourceFile:
    path: Path
    text: str  # the file's text without its byte-order mark: lines, columns and offsets count from here
    raw: bytes
    bom: str = ""  # "\ufeff" when the file starts with a UTF-8 byte-order mark; written back in front of the output

    @classmethod
    def read(cls, path: str | Path) -> "SourceFile":
        p = Path(path)
        try:
            if not p.exists():
                raise InputFileError(f"{p}: no such file")
            if p.is_dir():
                raise InputFileError(f"{p}: is a directory")
            raw = p.read_bytes()
        except OSError as exc:
            raise InputFileError(f"{p}: cannot read: {exc.strerror or exc}") from exc
        if b"\x00" in raw[:8192]:
            raise InputFileError(f"{p}: looks like a binary file (NUL byte)")
        try:
            text = raw.decode("utf-8")  # no newline translation: offsets see \r\n as two characters
        except UnicodeDecodeError as exc:
            raise InputFileError(f"{p}: not UTF-8 (invalid byte 0x{raw[exc.start]:02x} at offset {exc.start})") from exc
        bom = "\ufeff" if text.startswith("\ufeff") else ""
        return cls(p, text[len(bom) :], raw, bom)

    def encode(self, text: str) -> bytes:
        """The file's bytes for a new `text`: the byte-order mark, if it had one, then UTF-8."""
        return (self.bom + text).encode("utf-8")


def line_starts(text: str) -> list[int]:
    """Offset of the start of each line; a final line without a newline counts, an empty tail does not."""
    starts = [0]
    for i, ch in enumerate(text):
        if ch == "\n" and i + 1 < len(text):
            starts.append(i + 1)
    return starts if text else []


def lines_to_span(text: str, start_line: int, end_line: int) -> tuple[int, int]:
    """1-based inclusive line range -> [start, end) offsets covering whole lines, newline included."""
    starts = line_starts(text)
    n = len(starts)
    if start_line < 1 or end_line < start_line:
        raise SpanError(f"bad line range {start_line}-{end_line}: lines are 1-based and START ≤ END")
    if end_line > n:
        raise SpanError(f"line {end_line} is past the end of the file ({n} lines)")
    end = starts[end_line] if end_line < n else len(text)
    return starts[start_line - 1], end


def offset_to_line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def parse_target(target: str, *, with_column: bool = False) -> tuple[str, int, int]:
    """FILE:START-END / FILE:LINE (-> start, end) or FILE:LINE:COL (-> line, col)."""
    if with_column:
        m = re.fullmatch(r"(.+):(\d+):(\d+)", target)
        if not m:
            raise SpanError(f"expected FILE:LINE:COL, got {target!r}")
        return m[1], int(m[2]), int(m[3])
    m = re.fullmatch(r"(.+):(\d+)(?:-(\d+))?", target)
    if not m:
        raise SpanError(f"expected FILE:START-END or FILE:LINE, got {target!r}")
    return m[1], int(m[2]), int(m[3] or m[2])


def _lines(text: str) -> list[str]:
    """Lines as `patch` sees them: ended by \n only (str.splitlines also splits at \r, \f, U+2028, ...)."""
    return re.findall(r"[^\n]*\n|[^\n]+\Z", text)


def _diff_name(path: str) -> tuple[str, str]:
    """Header names for `patch -p1` run from the current folder; an outside file keeps its own path."""
    rel = os.path.relpath(path)
    inside = rel != ".." and not rel.startswith(".." + os.sep)
    return (f"a/{rel}", f"b/{rel}") if inside else (path, path)


def unified_diff(path: str, old: str, new: str) -> str:
    """A diff that `patch` applies byte-exactly, including CRLF lines and a missing final newline."""
    out = []
    for line in difflib.unified_diff(_lines(old), _lines(new), *_diff_name(path)):
        out.append(line)
        if not line.endswith("\n"):
            out.append("\n\\ No newline at end of file\n")
    return "".join(out)


def atomic_write(path: Path, data: bytes, *, expect: bytes) -> None:
    """Replace `path` with `data` via a temp file + rename, keeping its mode. Refuses if the file changed
    since read, or is read-only. A symbolic link is followed: its target is rewritten, the link kept."""
    path = Path(os.path.realpath(path))
    try:
        current = path.read_bytes()
    except OSError as exc:
        raise InputFileError(f"{path}: cannot re-read before writing: {exc.strerror or exc}") from exc
    if current != expect:
        raise InputFileError(f"{path}: changed on disk while generating; not overwritten")
    try:
        mode = path.stat().st_mode & 0o7777
        if not os.access(path, os.W_OK) or not mode & 0o222:  # root may write anything: keep the user's lock
            raise InputFileError(f"{path}: the file is read-only; not overwritten")
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise InputFileError(f"{path}: cannot write next to it: {exc.strerror or exc}; not overwritten") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise InputFileError(f"{path}: cannot write: {exc.strerror or exc}; not overwritten") from exc
        raise


# -- argument parsing -------------------------------------------------------------------------------
def _add_settings_flags(p: argparse.ArgumentParser) -> None:
    from diffucode.settings import add_flags

    add_flags(p.add_argument_group("generation"))
    m = p.add_argument_group("model")
    m.add_argument("--model", default=None, help="model folder or hub id (default: the embedded model)")
    m.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps, or auto (default: cpu)")
    m.add_argument("--quantize", default=None, choices=["none", "int8", "auto"],
                   help="int8: dynamic int8 linear layers on the CPU (float32 weights); auto: int8 where it "
                        "measures faster on this CPU when the model loads (default: none)")
    add_checkpoint_flags(m)


def add_checkpoint_flags(g) -> None:
    """--dtype and the public checkpoints' --family, --trust-remote-code, --preset (also `diffucode eval`'s)."""
    g.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp16", "fp32"],
                   help="weights' dtype in memory (default: fp32 for diffucode's own models; public checkpoints "
                        "bf16 on CUDA, fp16 on MPS, fp32 on CPU)")
    g.add_argument("--family", default=None,
                   help="model family when config.json does not say: dream, llada, open_dcoder, coda, a2d (mdlm), "
                        "a2d_bd3lm (bd3lm), sdar, diffusion_gemma")
    g.add_argument("--trust-remote-code", action="store_true",
                   help="run the checkpoint's own Python modelling code (executes downloaded code)")
    g.add_argument("--preset", default=None,
                   help="the authors' generation settings for a public model "
                        "(e.g. diffucoder-instruct, dream-coder, llada; "
                        "'auto' picks the loaded model's); settings given explicitly still win")


def _settings(args, language: str | None, engine=None):
    from diffucode.settings import InfillSettings, from_flags

    given = from_flags(args)
    if "language" in given:
        from diffucode.syntax.languages import SPECS, canonical_name

        if canonical_name(given["language"]) is None:
            raise ConfigError(f"--language {given['language']!r}: no grammar for it; "
                              f"choose from {', '.join(sorted(SPECS))}")
    given.setdefault("language", language)
    if getattr(args, "preset", None):
        from diffucode import families

        name = (engine.meta.get("preset") if engine is not None else None) if args.preset == "auto" else args.preset
        if name:
            given = families.preset_settings(name, **given)
    if given.get("length") and "length_mode" not in given:
        given["length_mode"] = "fixed"
    return InfillSettings(**given)


def _add_output_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--diff", action="store_true", help="print a unified diff instead of the whole file")
    g.add_argument("--in-place", action="store_true", help="rewrite the file atomically (untouched on any failure)")
    g.add_argument("--json", action="store_true",
                   help="print span, new text, validity, score, forwards and timing as JSON")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diffucode", description="Masked-diffusion code infilling and rewriting.")
    parser.add_argument("--version", action="version", version=f"diffucode {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("infill", help="regenerate lines of a file",
                       description="Discard lines START-END of FILE and generate new ones.")
    p.add_argument("target", metavar="FILE:START-END", help="1-based inclusive line range (FILE:LINE for one line)")
    p.add_argument("--snap", action="store_true",
                   help="widen the range to complete syntax nodes first (reported on stderr)")
    _add_output_flags(p)
    _add_settings_flags(p)
    p.set_defaults(func=cmd_infill)

    p = sub.add_parser("rewrite", help="re-predict the least confident tokens of lines",
                       description="Keep lines START-END but re-denoise their lowest-confidence tokens.")
    p.add_argument("target", metavar="FILE:START-END")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--fraction", type=float, default=None,
                   help="share of the span's tokens to re-predict (default 0.3)")
    g.add_argument("--below", type=float, default=None,
                   help="re-predict tokens whose probability is below this (repair)")
    g.add_argument("--instruction", default=None, metavar="TEXT",
                   help='rewrite the lines as TEXT asks, e.g. "add type hints" '
                        '(instruct checkpoints with a chat template)')
    _add_output_flags(p)
    _add_settings_flags(p)
    p.set_defaults(func=cmd_rewrite)

    p = sub.add_parser("complete", help="complete at a cursor", description="Fill in code at FILE:LINE:COL (1-based).")
    p.add_argument("target", metavar="FILE:LINE:COL")
    _add_output_flags(p)
    _add_settings_flags(p)
    p.set_defaults(func=cmd_complete)

    p = sub.add_parser("models", help="list the models available offline")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(func=cmd_models)

    for register in _plugins():
        register(sub)
    return parser


def _train(args) -> int:
    _import_torch()
    # torch: loaded when the command runs, after its flags were parsed
    from diffucode.training import cli as training_cli

    return training_cli.run(args)


def _plugins():
    """`diffucode train` (its flags from training/config.py, which loads no torch) and the subcommands of other
    packages (lsp, eval, campaign) through the `diffucode.commands` entry points. None of them imports
    torch to build its parser, so `--help` and flag errors answer at once."""
    from diffucode.training import config as training_config

    yield lambda sub: training_config.register(sub, _train)
    for ep in sorted(metadata.entry_points(group="diffucode.commands"), key=lambda e: e.name):
        try:
            yield ep.load()
        except Exception as exc:  # a broken plug-in must not take the core commands down
            print(f"diffucode: skipping command {ep.name!r}: {exc}", file=sys.stderr)


def version() -> str:
    """The installed diffucode's version ("unknown" when run from a tree that is not installed)."""
    try:
        return metadata.version("diffucode")
    except metadata.PackageNotFoundError:
        return "unknown"


# -- commands ---------------------------------------------------------------------------------------
def _import_torch() -> None:
    """Import torch with Ctrl-C held back: an interrupt that lands inside torch's native initialisation
    aborts the process (C++ terminate, exit -6) instead of raising KeyboardInterrupt. One that came
    meanwhile is raised as soon as the import is done, so the command still stops with its one line."""
    if "torch" in sys.modules:
        return
    came: list[int] = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: came.append(signum))
    except ValueError:  # not the main thread: nothing to hold back
        import torch  # noqa: F401
        return
    try:
        import torch  # noqa: F401,F811
    finally:
        signal.signal(signal.SIGINT, previous)
    if came:
        raise KeyboardInterrupt


def _load(args):
    from diffucode.loading import load_engine

    dtype = None if getattr(args, "dtype", "auto") == "auto" else args.dtype
    return load_engine(args.model, device=args.device, dtype=dtype, family=getattr(args, "family", None),
                       trust_remote_code=getattr(args, "trust_remote_code", False),
                       quantize=getattr(args, "quantize", None))


def _progress(args):
    if args.quiet or args.json or not sys.stderr.isatty():
        return None

    def on_step(update) -> None:
        print(f"\rdenoising: step {update.forwards}, {update.masked_left} masks left ",
              end="", file=sys.stderr, flush=True)

    return on_step


def _emit(args, src: SourceFile, result, span: tuple[int, int], extra: dict | None = None, *, engine=None) -> int:
    """Print or write the best candidate in the chosen output mode; return the exit code."""
    if sys.stderr.isatty() and not args.quiet and not args.json:
        print("\r", end="", file=sys.stderr)
    best = result.best
    new_text = best.apply(src.text) if best else None
    if args.json:
        s, e = span
        doc = {
            "file": str(src.path),
            "span": {"start": s, "end": e, "start_line": offset_to_line(src.text, s),
                     "end_line": offset_to_line(src.text, max(s, e - 1))},
            **(extra or {}),
            "valid": best is not None,
            "edits": [dataclasses.asdict(ed) for ed in best.edits] if best else [],
            "new_text": best.edits[0].text if best else None,
            "score": best.score if best else None,
            "reason": (best.reason if best else (result.candidates[0].reason if result.candidates else "no candidate")),
            "forwards": result.forwards,
            "hole_tokens": list(result.hole_tokens),
            "candidates": len(result.candidates),
            "invalid": result.n_invalid,
            "refused": result.refused,
            "elapsed_ms": round(result.elapsed_ms, 1),
        }
        _write_stdout((json.dumps(doc, ensure_ascii=False) + "\n").encode("utf-8"))
    if best is None and result.refused:
        print(f"diffucode: {result.refused}; nothing was written (pass --allow-delete to accept it; "
              f"{_empty_hint(engine)})", file=sys.stderr)
        return EXIT_NO_CANDIDATE
    if best is None:
        why = result.candidates[0].reason if result.candidates else "the model produced no candidate"
        print(f"diffucode: no valid candidate ({len(result.candidates)} tried): {why}", file=sys.stderr)
        return EXIT_NO_CANDIDATE
    if args.json:
        return EXIT_OK
    if args.in_place:
        atomic_write(src.path, src.encode(new_text), expect=src.raw)
        print(f"diffucode: wrote {src.path}", file=sys.stderr) if not args.quiet else None
    else:
        _write_stdout(unified_diff(str(src.path), src.bom + src.text, src.bom + new_text).encode("utf-8") if args.diff
                      else src.encode(new_text))
    if not args.quiet and all(not ed.text.strip() for ed in best.edits):
        what = ("filled the span with nothing: it is removed" if src.text[span[0] : span[1]].strip()
                else "proposed nothing here: the text is unchanged")
        print(f"diffucode: the model {what} ({_empty_hint(engine)})", file=sys.stderr)
    return EXIT_OK


def _empty_hint(engine) -> str:
    from diffucode.loading import is_interim

    if engine is not None and is_interim(engine.path):
        return ("the embedded model is an interim model that usually leaves holes empty: its card, "
                f"{engine.path / 'README.md'}, has its numbers; pass --model for a stronger one")
    return "try --candidates 4 --temperature 0.5, or another --model"


def _write_stdout(data: bytes) -> None:
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:  # disk full, a closed descriptor, ...
        raise InputFileError(f"cannot write the output: {exc.strerror or exc}") from exc


def _drafts_for(args, src: SourceFile, settings, extra: dict):
    """The retrieval for this file's holes (settings.context), reporting what it read into `extra`; None when off."""
    if settings.context == "none" or not settings.drafts:
        return None
    from diffucode.context import RepoContext
    from diffucode.workspace import Limits, Workspace, exts_for, project_root

    path = Path(src.path).resolve()
    ws = None
    if settings.context == "repo":
        ws = Workspace(project_root(path), limits=Limits(exts=exts_for(settings.language) or (path.suffix,)))
    ctx = RepoContext(ws, mode=settings.context)

    def drafts_for(start: int, end: int):
        if ws is not None and not ctx.ready and not args.quiet and not args.json and sys.stderr.isatty():
            print(f"\rindexing {ws.root} ...", end="", file=sys.stderr, flush=True)
        found = ctx.drafts(path, src.text, start, end, k=settings.drafts)
        extra["context"] = {"mode": settings.context, "root": str(ws.root) if ws else None,
                            "files": len(ctx.index()) if ws else 1, "index_ms": round(ctx.index_seconds * 1e3, 1),
                            "drafts": [{"path": str(d.path), "line": d.line + 1, "match": round(d.score, 3)}
                                       for d in found]}
        return found

    return drafts_for


def cmd_infill(args) -> int:
    _import_torch()
    from diffucode import guard, syntax
    from diffucode.refine import infill_in_context

    path, a, b = parse_target(args.target)
    src = SourceFile.read(path)
    span = lines_to_span(src.text, a, b)
    language = syntax.language_for_path(path)
    extra = {}
    if args.snap:
        snap = syntax.snap(src.text, *span, language=language)
        if (snap.start, snap.end) != span:
            print(
                f"diffucode: snapped lines {a}-{b} to {snap.kind} at lines "
                f"{offset_to_line(src.text, snap.start)}-{offset_to_line(src.text, max(snap.start, snap.end - 1))}"
                + (f" ({snap.note})" if snap.note else ""),
                file=sys.stderr,
            )
        extra["snapped"] = {"kind": snap.kind, "start": snap.start, "end": snap.end, "note": snap.note}
        too_far = guard.snap_growth(src.text, span, (snap.start, snap.end))
        if too_far:
            raise SpanError(too_far.removeprefix(guard.REFUSED))
        span = (snap.start, snap.end)
    engine = _load(args)
    settings = _settings(args, language, engine)
    drafts_for = _drafts_for(args, src, settings, extra)
    result = infill_in_context(engine, src.text, [span], settings, drafts_for, on_step=_progress(args))
    return _emit(args, src, result, span, extra, engine=engine)


def cmd_rewrite(args) -> int:
    _import_torch()
    from diffucode import infill, syntax

    path, a, b = parse_target(args.target)
    for flag, value in (("--fraction", args.fraction), ("--below", args.below)):
        if value is not None and not 0.0 < value <= 1.0:  # checked before the model loads
            raise ConfigError(f"{flag} must be in (0, 1], got {value}")
    ignored = [flag for flag, name in (("--length", "length"), ("--length-mode", "length_mode"),
                                       ("--search-lengths", "search_lengths")) if getattr(args, name, None) is not None]
    if ignored:
        raise ConfigError(f"rewrite keeps the span's tokens and re-predicts some of them: {', '.join(ignored)} "
                          "does not apply (use infill to regenerate the span)")
    src = SourceFile.read(path)
    span = lines_to_span(src.text, a, b)
    engine = _load(args)
    settings = _settings(args, syntax.language_for_path(path), engine)
    if args.instruction is not None:
        from diffucode.instruct import instruct

        result = instruct(engine, src.text, span, args.instruction, settings, on_step=_progress(args))
        return _emit(args, src, result, span, engine=engine)
    result = infill.rewrite(engine, src.text, span, settings, fraction=args.fraction if args.below is None else None,
                            below=args.below, on_step=_progress(args))
    return _emit(args, src, result, span, engine=engine)


def cmd_complete(args) -> int:
    _import_torch()
    from diffucode import syntax
    from diffucode.refine import complete_in_context

    path, line, col = parse_target(args.target, with_column=True)
    src = SourceFile.read(path)
    starts = line_starts(src.text) or [0]
    if line < 1 or col < 1:
        raise SpanError(f"bad position {line}:{col}: lines and columns are 1-based")
    if line > len(starts) + (1 if src.text.endswith("\n") else 0):
        raise SpanError(f"line {line} is past the end of the file ({len(starts)} lines)")
    start = starts[line - 1] if line <= len(starts) else len(src.text)
    end = src.text.find("\n", start)
    end = len(src.text) if end < 0 else end
    if src.text[start:end].endswith("\r"):
        end -= 1
    if col < 1 or start + col - 1 > end:
        raise SpanError(f"column {col} is past the end of line {line} ({end - start} characters)")
    cursor = start + col - 1
    engine = _load(args)
    settings = _settings(args, syntax.language_for_path(path), engine)
    extra: dict = {}
    result = complete_in_context(engine, src.text, cursor, settings, _drafts_for(args, src, settings, extra),
                                 on_step=_progress(args))
    span = (result.best.edits[0].start, result.best.edits[0].end) if result.best else (cursor, cursor)
    return _emit(args, src, result, span, extra, engine=engine)


def cmd_models(args) -> int:
    _import_torch()
    from diffucode.loading import available

    rows = available()
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    for r in rows:
        if "error" in r:
            print(f"{r['name']:<12} unreadable: {r['error']}")
        elif not r["present"]:
            print(f"{r['name']:<12} (not installed)  {r['path']}")
        else:
            known = {k: "?" if r.get(k) is None else r[k] for k in ("dtype", "d_model", "n_layers", "context")}
            print(f"{r['name']:<12} {r['size_bytes'] / 2**20:6.1f} MiB  {known['dtype']!s:<8} d={known['d_model']} "
                  f"layers={known['n_layers']} context={known['context']}  {r['path']}"
                  + ("  (interim: trained on a CPU; see its README.md)" if r.get("interim") else ""))
    _print_known()
    print("other models: pass --model FOLDER (a diffucode model folder) or a hub id", file=sys.stderr)
    return EXIT_OK


def _print_known() -> None:
    """The public checkpoints diffucode knows (families.KNOWN_MODELS) and every preset, for `diffucode models`."""
    from diffucode.families import FAMILY_PRESETS, KNOWN_MODELS

    print("\nknown public checkpoints (pass the hub id, or its downloaded folder, to --model; docs/models.md):")
    for m in KNOWN_MODELS:
        print(f"  {m['hub']:<58} {m['family']:<15} {m['params']:<17} {m['jobs']:<26} --preset {m['preset']}")
    print(f"presets: {', '.join(FAMILY_PRESETS)}")


def main(argv: list[str] | None = None) -> int:
    args = None
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except NoValidCandidate as exc:
        print(f"diffucode: {exc}", file=sys.stderr)
        return EXIT_NO_CANDIDATE
    except DiffucodeError as exc:
        print(f"diffucode: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"\ndiffucode: interrupted; {getattr(args, 'on_interrupt', 'nothing was written')}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except OSError as exc:  # a folder or file the command cannot create or write (train, eval, ...)
        print(f"diffucode: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
