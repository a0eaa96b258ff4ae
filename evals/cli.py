"""`diffucode eval TASKSET ...`: generate code for a benchmark, run its unit tests, report pass@k.

The main CLI finds this command through the entry-point group ``diffucode.commands``
(``eval = "diffucode_evals.cli:register"``); ``python -m diffucode_evals eval ...`` works without it.
Exit codes: 0 done, 1 below ``--fail-under``, 2 usage or data error, 130 interrupted (results kept).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from diffucode.errors import DiffucodeError

from .data import TASK_SETS, get_spec, load_taskset
from .execution import GiB, default_workers
from .model_generator import MODEL_KNOBS, ModelGenerator
from .prompts import PROMPT_STYLES
from .runner import CanonicalGenerator, RunConfig, evaluate

EPILOG = """task sets: {sets}
examples:
  diffucode eval humaneval --generator canonical --data-file HumanEval.jsonl.gz   # check the harness
  diffucode eval humaneval --model path/to/model --n-samples 10 --k 1,10 --temperature 0.8
  diffucode eval mbpp --prompt-style 3shot --data-dir /work/shared/data --limit 20
Rerunning the same command resumes: finished (task, sample) pairs in --out are skipped."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("taskset", nargs="?", help="which benchmark (see the list below; --list for details)")
    p.add_argument("--list", action="store_true", help="list the task sets and exit")
    g = p.add_argument_group("data")
    g.add_argument("--data-file", metavar="PATH", help="the task set's data file (works offline)")
    g.add_argument("--data-dir", metavar="DIR",
                   help="a folder laid out like shared/data (human-eval/, evalplus/, mbpp/, ...); "
                        "default: $DIFFUCODE_EVAL_DATA")
    g.add_argument("--limit", type=int, metavar="N", help="only the first N tasks")
    g.add_argument("--tasks", metavar="ID,ID", help="only these tasks (full ids or their last part, e.g. 0,12)")
    g = p.add_argument_group("generation")
    g.add_argument("--generator", choices=("model", "canonical"), default="model",
                   help="model: the diffucode engine; canonical: the reference solutions (checks the harness)")
    g.add_argument("--model", metavar="M", help="model folder or hub id (default: the embedded model)")
    g.add_argument("--device", default="cpu", help="torch device for the model (default: cpu)")
    g.add_argument("--n-samples", type=int, default=1, metavar="N", help="samples per task (default 1)")
    g.add_argument("--k", default="1", metavar="K,K", help="pass@k values to report (default 1)")
    g.add_argument("--prompt-style", choices=PROMPT_STYLES, default="bigcode",
                   help="MBPP prompt: bigcode docstring or the 3-shot [BEGIN]/[DONE] prompt (default bigcode)")
    g.add_argument("--no-sanitize", action="store_true",
                   help="execute completions as generated (no stop sequences, no parse fallback)")
    for name, (typ, help_text) in MODEL_KNOBS.items():
        g.add_argument("--" + name.replace("_", "-"), type=typ, default=None, help=help_text)
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
    g = p.add_argument_group("output")
    g.add_argument("--out", metavar="DIR", help="run folder (default runs/eval/TASKSET-MODEL-GENERATOR)")
    g.add_argument("--overwrite", action="store_true", help="discard results already in --out")
    g.add_argument("--fail-under", type=float, metavar="P",
                   help="exit 1 when pass@1 (in percent) is below P")
    g.add_argument("--quiet", action="store_true", help="no progress line")


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


def run(args: argparse.Namespace) -> int:
    """Run the eval described by parsed ``args``; returns the process exit code."""
    if args.list:
        _print_sets()
        return 0
    err = sys.stderr
    try:
        if not args.taskset:
            raise DiffucodeError("name a task set (diffucode eval --list shows them)")
        spec = get_spec(args.taskset)
        ks = _parse_ks(args.k)
        if args.n_samples < 1:
            raise DiffucodeError("--n-samples must be >= 1")
        if ks[-1] > args.n_samples:
            raise DiffucodeError(f"--k {ks[-1]} needs --n-samples >= {ks[-1]} (got {args.n_samples})")
        if args.workers is not None and args.workers < 1:
            raise DiffucodeError("--workers must be >= 1")
        if args.timeout <= 0:
            raise DiffucodeError("--timeout must be > 0")
        taskset = load_taskset(spec.name, data_file=args.data_file, data_dir=args.data_dir)
        taskset = taskset.select(tasks=args.tasks.split(",") if args.tasks else None, limit=args.limit)
        if not taskset.tasks:
            raise DiffucodeError("no tasks selected")
        if args.generator == "canonical":
            generator = CanonicalGenerator()
            identity = {"generator": "canonical", "model": None}
        else:
            knobs = {k: getattr(args, k) for k in MODEL_KNOBS}
            if args.n_samples > 1 and knobs.get("temperature") == 0:
                print("warning: --temperature 0 with --n-samples > 1 gives identical samples", file=err)
            generator = ModelGenerator(args.model, device=args.device, prompt_style=args.prompt_style,
                                       fewshot=taskset.fewshot, **knobs)
            identity = {"generator": "model", "model": args.model or "embedded",
                        "prompt_style": args.prompt_style, **knobs}
        if args.prompt_style == "3shot" and spec.fewshot and len(taskset.fewshot) != 3:
            raise DiffucodeError("--prompt-style 3shot needs MBPP tasks 2, 3 and 4 in the data file")
        out = Path(args.out) if args.out else Path("runs") / "eval" / _slug(
            f"{spec.name}-{identity.get('model') or 'none'}-{identity['generator']}")
        config = RunConfig(
            out_dir=out,
            n_samples=args.n_samples,
            ks=ks,
            workers=args.workers,
            timeout_s=args.timeout,
            memory_bytes=int(args.memory_gb * GiB) if args.memory_gb > 0 else None,
            calibrate=spec.calibrate if args.calibrate == "auto" else args.calibrate == "on",
            max_timeout_s=max(args.max_timeout, args.timeout),
            sanitize=not args.no_sanitize,
            progress=not args.quiet,
            overwrite=args.overwrite,
            identity=identity,
        )
        for note in taskset.notes:
            print(f"note: {note}", file=err)
        summary = evaluate(taskset, generator, config, stream=err)
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

    scores = ", ".join(
        f"{key} {100 * summary[key]:.2f}%" if summary.get(key) is not None else f"{key} n/a"
        for key in (f"pass@{k}" for k in ks)
    )
    base = summary.get("base")
    if base:
        scores += " (base: " + ", ".join(
            f"{k} {100 * v:.2f}%" if v is not None else f"{k} n/a" for k, v in base.items()) + ")"
    print(f"{summary['taskset']} [{summary['generator']}, {summary['model'] or '-'}]: {scores} "
          f"over {summary['n_tasks_with_results']} tasks; {summary['status_counts']}; "
          f"summary: {config.out_dir / 'summary.json'}")
    if args.fail_under is not None and (summary.get("pass@1") is None or 100 * summary["pass@1"] < args.fail_under):
        print(f"pass@1 is below --fail-under {args.fail_under}", file=err)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry: ``python -m diffucode_evals eval TASKSET ...``."""
    parser = argparse.ArgumentParser(prog="diffucode")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


__all__ = ["add_arguments", "main", "register", "run"]
