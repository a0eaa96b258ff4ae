"""`diffucode train`: corpus → tokenizer → token shards → training (resumable, time-boxed) → export.

One command does everything and picks up where the last call stopped:

    diffucode train --out runs/small --preset small --time-budget 540

This module runs the command: it checks the flags and the run folder, fixes the settings in run.json at
the first call (config.py), prepares the data on rank 0 (shards.py), then trains (loop.py) and exports
(export.py). `python -m diffucode.training ...` (what torchrun runs) enters through `main`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

from diffucode import checkpoint, distributed
from diffucode.devices import resolve_device
from diffucode.errors import CheckpointError, ConfigError
from diffucode.model import PRESETS
from diffucode.training import config
from diffucode.training.card import lineage
from diffucode.training.config import TrainConfig, add_arguments, resolve
from diffucode.training.corpus import DataConfig, check_inputs
from diffucode.training.decontamination import find_bench_data
from diffucode.training.export import check_export_dest, export
from diffucode.training.loop import train_loop
from diffucode.training.masking import MaskingConfig
from diffucode.training.shards import is_built, prepare
from diffucode.training.state import ckpt_dir, command_line


def register(subparsers) -> None:
    """Add `diffucode train` to the main CLI."""
    config.register(subparsers, run)


def process_start() -> float:
    """When this process started (Linux /proc; else now): the time budget counts interpreter and torch
    start-up too, which a slice's wall clock includes."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        btime = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                     if line.startswith("btime"))
        start = btime + ticks / os.sysconf("SC_CLK_TCK")
        return start if 0 <= time.time() - start < 120 else time.time()  # a long-lived process: from now
    except (OSError, ValueError, IndexError, StopIteration, AttributeError):
        return time.time()


def smoke_data(dcfg: DataConfig, log) -> DataConfig:
    """--smoke must run on any machine: decontaminate when the HumanEval/MBPP data is found, else turn
    decontamination off for this run and say so (run.json and the model card record it too)."""
    if not dcfg.decontaminate:
        return dcfg
    try:
        found = find_bench_data(dcfg.bench_data)
    except ConfigError:  # --bench-data names a folder that is not there
        found = None
    if found is not None:
        return dcfg
    where = f" at {dcfg.bench_data}" if dcfg.bench_data else ""
    log(f"smoke run: no HumanEval/MBPP data found{where}; decontamination is OFF for this run "
        "(a run with --bench-data DIR is decontaminated)")
    return dataclasses.replace(dcfg, decontaminate=False)


def check_run_folder(out: Path) -> None:
    """--out must be a run folder (with run.json), an empty folder or a new path: a run started in a
    folder of other files would mix with them, and a first call that fails could not clean up."""
    try:
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out} is a file; give a folder for the run")
        if out.is_dir() and not (out / "run.json").is_file() and any(not _ignorable(p) for p in out.iterdir()):
            raise ConfigError(f"--out {out} is not empty and is not a diffucode run folder (no run.json); "
                              "use a new or empty folder")
        if (out / "run.json").is_file() and not _is_train_record(out / "run.json"):
            raise ConfigError(f"--out {out} holds a run.json that diffucode train did not write (another tool's run?); "
                              "use a new or empty folder")
    except OSError as exc:
        raise ConfigError(f"--out {out}: {exc.strerror or exc}") from exc


RUN_FILES = ("run.json", "tokenizer.json", "data", "ckpt")  # what a run writes in its folder


def _ignorable(path: Path) -> bool:
    """What an "empty" run folder may already hold: hidden files (.gitkeep) and empty files (the log a
    shell redirect such as `> OUT/train.log` creates before the command starts); plain files only,
    none named like a file the run writes."""
    return (path.is_file() and not path.is_symlink() and path.name not in RUN_FILES
            and (path.name.startswith(".") or path.stat().st_size == 0))


def _is_train_record(path: Path) -> bool:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(record, dict) and all(k in record for k in ("data", "train", "command"))


@contextlib.contextmanager
def _undone_if_first_call_fails(out: Path, *, first: bool):
    """A first call (no run.json before it: check_run_folder left OUT new or empty) that fails before
    its data is ready (a one-line error, an unreadable file, a tokenizer error...) removes what it wrote
    (run.json, tokenizer.json, data/) and the folders it made, so a retry with corrected flags starts
    afresh instead of meeting these settings. An interrupt (Ctrl-C) keeps them: rerunning resumes."""
    made = [p for p in (out, *out.parents) if not p.exists()]  # OUT and the parents mkdir will create
    try:
        yield
    except Exception:
        if first:
            for name in ("run.json", "tokenizer.json", "tokenizer.json.tmp"):
                (out / name).unlink(missing_ok=True)
            if (out / "data").is_symlink():  # --data-from: the link goes, the other run's data stays
                (out / "data").unlink()
            elif (out / "data").is_dir():
                shutil.rmtree(out / "data", ignore_errors=True)
            for folder in made:  # innermost first; a folder that holds anything else stays
                try:
                    folder.rmdir()
                except FileNotFoundError:  # never made (mkdir failed before it)
                    continue
                except OSError:
                    break
        raise


def run(args: argparse.Namespace) -> int:
    """`diffucode train`: prepare the data (rank 0), then train; leaves the DDP process group at exit."""
    try:
        return _run(args)
    finally:
        distributed.shutdown()


def _run(args: argparse.Namespace) -> int:
    t_start = getattr(args, "t_start", None) or process_start()
    out = Path(args.out)
    rank = distributed.rank()
    quiet = getattr(args, "quiet", False)
    say = (lambda msg: None) if quiet or rank != 0 else (lambda msg: print(msg, flush=True))
    if args.export_only:
        export(out, args.export_only, log=say)
        return 0
    _check_flags(args, out, rank)
    init_model, init_lineage = _starting_model(args, out)
    run_json = out / "run.json"
    stored = json.loads(run_json.read_text()) if run_json.is_file() else None
    data_from = _data_source(args, stored)
    dcfg, mcfg, tcfg = resolve(args, stored or ({"data": data_from[1]} if data_from else None))
    if tcfg.preset not in PRESETS:
        raise ConfigError(f"unknown preset {tcfg.preset!r}; choose from {', '.join(PRESETS)}")
    command = command_line(getattr(args, "argv", None))
    if rank == 0:
        dcfg, tcfg = _write_run(args, out, stored, (dcfg, mcfg, tcfg), command, init_model, init_lineage, say,
                                data_from=data_from[0] if data_from else None)
        say(f"data ready [{time.time() - t_start:.1f}s]")
    if distributed.world_size() > 1:
        distributed.init(args.device)  # the other ranks wait here (distributed.TIMEOUT) while rank 0 prepares
        distributed.barrier()
        dcfg, mcfg, tcfg = resolve(args, json.loads(run_json.read_text()))
    if args.prepare_only:
        return 0
    margin = args.budget_margin + (5.0 if args.export else 0.0)  # the export after training needs a few seconds too
    train_loop(out, dcfg, mcfg, tcfg, time_budget=args.time_budget, t_start=t_start, device=args.device,
               init_from=args.init_from, stop_after=args.steps, budget_margin=margin, quiet=quiet, command=command)
    if args.export and rank == 0:
        export(out, args.export, log=say)
    return 0


def _check_flags(args: argparse.Namespace, out: Path, rank: int) -> None:
    """What can be refused before any work: the run folder, the device, the export destination, budgets."""
    if rank == 0:
        check_run_folder(out)
    if args.device:
        resolve_device(args.device)  # one line for a GPU that is not there, before any data is built
    if args.export:
        check_export_dest(args.export)  # before training, not after it
    for flag, value in (("--time-budget", args.time_budget), ("--steps", args.steps)):
        if value is not None and value < 0:
            raise ConfigError(f"{flag} must be ≥ 0 (0: no limit)")


def _starting_model(args: argparse.Namespace, out: Path) -> tuple[dict | None, dict | None]:
    """(model config, lineage) of the --init-from folder when a new run starts from it, else (None, None):
    the model's shape, and what run.json records of that model's own training."""
    if not (args.init_from and ckpt_dir(out) is None):
        return None, None
    src = checkpoint.read_config(args.init_from)
    if (src.get("format") != checkpoint.FORMAT or "model" not in src
            or not (Path(args.init_from) / "tokenizer.json").is_file()):
        raise CheckpointError(f"--init-from {args.init_from} is not a diffucode model folder")
    return src["model"], lineage(args.init_from, src)


def _data_source(args: argparse.Namespace, stored: dict | None) -> tuple[Path, dict] | None:
    """--data-from RUN of a first call: (RUN resolved, RUN's data settings), after checking that RUN's data is
    built, that no data flag contradicts it and that an --init-from model reads the same tokenizer. A later
    call of the run names the same RUN or none: its data is already there."""
    if not args.data_from:
        return None
    src = Path(args.data_from).resolve()
    if stored is not None:
        linked = stored.get("data_from")
        if not (linked and Path(linked).exists() and os.path.samefile(linked, src)):
            raise ConfigError(f"--data-from {args.data_from}: this run already has its data "
                              f"({linked or 'built in its own folder'})")
        return None
    if getattr(args, "smoke", False):
        raise ConfigError("--data-from takes another run's data as it is: leave out --smoke")
    try:
        record = json.loads((src / "run.json").read_text(encoding="utf-8"))
        index_ok = (src / "data" / "index.json").is_file() and (src / "tokenizer.json").is_file()
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--data-from {args.data_from} is not a diffucode run folder ({exc})") from exc
    if not (isinstance(record, dict) and "data" in record and index_ok):
        raise ConfigError(f"--data-from {args.data_from} has no prepared data (run `diffucode train --out "
                          f"{args.data_from} --prepare-only` first)")
    for f in dataclasses.fields(DataConfig):
        given = getattr(args, f.name, None)
        if given is not None and not config.same_setting(given, record["data"].get(f.name)):
            raise ConfigError(f"--{f.name.replace('_', '-')} {given!r} differs from the data of --data-from "
                              f"{args.data_from} ({record['data'].get(f.name)!r}); leave it out")
    tokenizer = (src / "tokenizer.json").read_bytes()
    if args.init_from and (Path(args.init_from) / "tokenizer.json").read_bytes() != tokenizer:
        raise ConfigError(f"--init-from {args.init_from} and --data-from {args.data_from} have different tokenizers")
    if not is_built(src / "data", src / "tokenizer.json", DataConfig.from_dict(record["data"])):
        raise ConfigError(f"--data-from {args.data_from}: its data is not complete for its settings (prepare it "
                          "there first; a run never builds data in another run's folder)")
    return src, record["data"]


def _write_run(args: argparse.Namespace, out: Path, stored: dict | None,
               cfgs: tuple[DataConfig, MaskingConfig, TrainConfig], command: list[str], init_model: dict | None,
               init_lineage: dict | None, say, *, data_from: Path | None = None) -> tuple[DataConfig, TrainConfig]:
    """Rank 0: write run.json (the first call fixes the settings; later ones add their command line) and
    build the data (or, with --data-from, link another run's). Returns the data and training settings,
    which a first call may adjust (--smoke without benchmark data; the shape of an --init-from model)."""
    dcfg, mcfg, tcfg = cfgs
    if getattr(args, "smoke", False) and not stored and getattr(args, "decontaminate", None) is None:
        dcfg = smoke_data(dcfg, say)
    linked = data_from or (Path(stored["data_from"]) if stored and stored.get("data_from") else None)
    if not stored and not linked:
        check_inputs(dcfg)  # a --sources folder that is not there: one line, before run.json exists
    if stored and linked and not (out / "data").exists():
        raise ConfigError(f"the data this run trains on, {linked}/data, is gone (it was linked with --data-from)")
    copy_tokenizer = init_model is not None and not (out / "tokenizer.json").exists()
    if copy_tokenizer:
        shape = {k: init_model[k] for k in ("d_model", "n_layers", "n_heads", "ffn_hidden")}
        tcfg = dataclasses.replace(tcfg, **shape, seq_len=init_model["max_seq_len"])
    record = {"data": dcfg.to_dict(), "masking": mcfg.to_dict(), "train": asdict(tcfg),
              "command": stored["command"] if stored else command,
              "created": stored.get("created") if stored else time.strftime("%Y-%m-%d %H:%M:%S")}
    if stored:
        record["last_command"] = command
    if copy_tokenizer and init_lineage:
        record["init_from"] = init_lineage
    elif stored and "init_from" in stored:  # a later call of a run started from a model keeps its lineage
        record["init_from"] = stored["init_from"]
    if data_from or (stored and "data_from" in stored):
        record["data_from"] = str(data_from) if data_from else stored["data_from"]
    with _undone_if_first_call_fails(out, first=not stored):
        out.mkdir(parents=True, exist_ok=True)
        (out / "run.json").write_text(json.dumps(record, indent=1) + "\n")
        if copy_tokenizer:
            shutil.copyfile(Path(args.init_from) / "tokenizer.json", out / "tokenizer.json")
        if data_from:
            if not copy_tokenizer:  # the same file when both are given (_data_source checks)
                shutil.copyfile(data_from / "tokenizer.json", out / "tokenizer.json")
            (out / "data").symlink_to(data_from / "data", target_is_directory=True)
        if not linked:  # linked data is another run's, checked complete by _data_source: never rebuilt here
            prepare(out / "data", dcfg, tokenizer_path=out / "tokenizer.json", workers=args.data_workers, log=say)
    return dcfg, tcfg


def main(argv: list[str] | None = None, *, t_start: float | None = None) -> int:
    """`python -m diffucode.training ...` (what torchrun runs); in-process callers' budgets count from the call."""
    p = argparse.ArgumentParser(prog="diffucode train")
    add_arguments(p)
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.t_start = t_start or time.time()
    try:
        return run(args)
    except (ConfigError, CheckpointError) as exc:
        print(f"diffucode train: {exc}", file=sys.stderr)
        return 2
