"""The training loop: train (or continue training) a run whose data is prepared, within a time budget.

The run folder holds run.json (the settings fixed at the first call), tokenizer.json, data/ (shards.py),
ckpt/ (the latest checkpoint, state.py) and metrics.jsonl (one JSON line per log line: kind "train" or
"eval").

One call is a few named phases (gpt-fast style): `Trainer.__init__` sets up the device, model, optimizer
(resumed from the checkpoint), compiled step and data; `train_step` runs one optimizer step;
`after_step` measures it, logs, evaluates and saves at their intervals; `finish` takes the closing
measurement and saves. Every duration that decides when to stop is measured as the call runs (`Clock`).

Speed on a GPU: bf16 autocast, fused AdamW, `torch.compile` of the transformer trunk and of the output
head (objective.py). Multi-GPU: `torchrun --nproc_per_node N -m diffucode.training ...` (DDP;
distributed.py keeps the ranks' decisions common).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from diffucode import checkpoint, distributed
from diffucode.errors import ConfigError
from diffucode.model import DiffusionTransformer, ModelConfig, preset
from diffucode.tokenizer import Tokenizer
from diffucode.training.batches import CountFrom, MicroBatches
from diffucode.training.config import TrainConfig
from diffucode.training.corpus import DataConfig
from diffucode.training.cpu_runtime import autocast, choose_precision, compile_enabled, cpu_threads
from diffucode.training.evaluator import Evaluator
from diffucode.training.flops import peak_flops, train_flops
from diffucode.training.masking import KIND_NAMES, BatchSource, MaskingConfig, Specials
from diffucode.training.objective import LossNet
from diffucode.training.schedule import cosine_lr, decay_left_by_steps, decay_left_by_time, wsd_lr
from diffucode.training.state import (calls_so_far, ckpt_dir, command_line, load_checkpoint, model_meta,
                                      save_checkpoint, saved_state)
from diffucode.training.token_store import TokenStore
from diffucode.training.vocab import token_tables


@dataclass
class RunResult:
    step: int
    stopped_by: str  # "max_steps", "time_budget", "steps"
    last_eval: dict
    tok_per_s: float
    max_steps: int = 0  # the schedule's length (0: not planned yet)


def lr_at(step: int, cfg: TrainConfig, max_steps: int, *, call_start: int = 0,
          decay_left: float | None = None) -> float:
    """The learning rate at `step` (schedule.py). wsd: `call_start` is this call's first step and
    `decay_left` the share of the decay window still ahead (by time, when the call has a time budget;
    None: by steps, to max_steps)."""
    kw = dict(lr=cfg.lr, warmup=cfg.warmup_steps, floor_frac=cfg.min_lr_frac)
    if cfg.schedule == "cosine":
        return cosine_lr(step, max_steps=max_steps, **kw)
    if decay_left is None:
        decay_left = decay_left_by_steps(step, call_start=call_start, max_steps=max_steps, decay_frac=cfg.decay_frac)
    return wsd_lr(step - call_start, decay_left=decay_left, **kw)


def model_config(cfg: TrainConfig, vocab_size: int) -> ModelConfig:
    over = {k: getattr(cfg, k) for k in ("d_model", "n_layers", "n_heads", "ffn_hidden") if getattr(cfg, k)}
    return preset(cfg.preset, vocab_size=vocab_size, max_seq_len=cfg.seq_len, **over)


def _log_fn(out: Path, rank: int, quiet: bool):
    path = out / "metrics.jsonl"

    def log(msg: str, **record) -> None:
        if rank != 0:
            return
        if not quiet:
            print(msg, flush=True)
        if record:
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"time": round(time.time(), 1), **record}) + "\n")

    return log


def _device_sync(dev: torch.device) -> None:
    """Wait for the GPU's queued work, so that a wall-clock step time measures the step itself (CUDA
    kernels run asynchronously: without it, a time is only how long the launches took)."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


@dataclass
class Clock:
    """The call's time budget and the durations planned against it: the budget counts from `t_start`
    (the process start), and a step, an evaluation and a save are each measured as the call runs."""

    t_start: float
    time_budget: float  # seconds (0: no limit)
    margin: float  # kept free at the end of the budget
    save_est: float  # seconds a save takes: estimated, then measured
    eval_est: float | None = None  # seconds the last evaluation took
    step_times: list[float] = field(default_factory=list)  # the last 50 steps' seconds
    t_slice: float = 0.0  # when this call's training started
    decay_seen: float = float("inf")  # the smallest decay share returned so far (decay_left never rises)

    def remaining(self) -> float:
        return self.time_budget - (time.time() - self.t_start) if self.time_budget else float("inf")

    def must_stop(self, next_cost: float, dev: torch.device) -> bool:
        """Whether the budget leaves too little for `next_cost` + a save; common to all ranks."""
        return distributed.any_rank(self.remaining() < next_cost + self.save_est + self.margin, dev)

    def step_estimate(self, first_cost: float) -> float:
        return _median(self.step_times) * 1.5 if self.step_times else first_cost

    def decay_left(self, step_cost: float, decay_frac: float) -> float:
        """wsd with a time budget: the share of the decay window left before the call must stop
        training (the stop rule of must_stop, plus the closing evaluation). Never larger than an earlier
        answer: an evaluation that ran faster than estimated moves the stop later, and without this the
        learning rate would climb back up inside the decay window."""
        stop_at = self.t_start + self.time_budget - step_cost - self.save_est - self.margin - (self.eval_est or 0.0)
        left = decay_left_by_time(time.time(), call_start=self.t_slice, call_end=stop_at, decay_frac=decay_frac)
        self.decay_seen = min(self.decay_seen, left)
        return self.decay_seen


class LossMeter:
    """The training loss since the last log line, by row kind (masking.py), and the positions that went
    through the output head (for MFU); summed over the ranks when read."""

    def __init__(self, dev: torch.device, micro: int):
        self.dev, self.micro = dev, micro
        self.loss = torch.zeros(4, device=dev)  # Σ loss over rows of each kind (0..2) + total
        self.count = torch.zeros(5, device=dev)  # rows of each kind (0..2) + total, and [4] positions through the head
        self.steps = 0  # steps since the last log line

    @torch.no_grad()
    def add(self, b: dict, ce: torch.Tensor) -> None:
        """One micro-batch `b` (batches.py) and its (N,) cross-entropy at the selected positions."""
        per_row = torch.zeros(self.micro, device=self.dev).index_add_(0, b["row_of"], ce.detach() * b["w"])
        self.loss.index_add_(0, b["kind"], per_row)
        self.count.index_add_(0, b["kind"], torch.ones_like(per_row))
        self.loss[3] += per_row.sum()
        self.count[3] += self.micro
        self.count[4] += b["sel"].numel()

    def read(self, ddp: bool) -> tuple[list[float], list[float], int]:
        """(Σ losses, counts, steps) since the last read, over all ranks; starts a new window."""
        if ddp:
            torch.distributed.all_reduce(self.loss)
            torch.distributed.all_reduce(self.count)
        la, ca, steps = self.loss.tolist(), self.count.tolist(), self.steps
        self.loss.zero_()
        self.count.zero_()
        self.steps = 0
        return la, ca, steps


class Trainer:
    """One call of train_loop: the run's model, optimizer, step function, data and state (saved in the
    checkpoint as state.json), and the phases of the call."""

    def __init__(self, out: Path, mcfg: MaskingConfig, cfg: TrainConfig, *, clock: Clock, device: str | None,
                 init_from: str | None, quiet: bool, command: list[str] | None):
        self.out, self.mcfg, self.cfg, self.clock = out, mcfg, cfg, clock
        self.world, self.rank = distributed.world_size(), distributed.rank()
        self.ddp = self.world > 1
        self.dev = distributed.init(device) if self.ddp else torch.device(
            device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.cuda = self.dev.type == "cuda"
        self.log = _log_fn(out, self.rank, quiet)
        self.threads = torch.get_num_threads()  # restored at the end of the call
        if self.dev.type == "cpu":  # one thread per core (more oversubscribe and are several times slower)
            torch.set_num_threads(cfg.threads or cpu_threads(self.world))
            torch.set_flush_denormal(True)
        if self.cuda:
            torch.set_float32_matmul_precision("high")  # TF32 for the few fp32 matmuls left outside autocast
        self.tok = Tokenizer.from_file(out / "tokenizer.json")
        self.byte_len, self.ends_line = token_tables(self.tok)
        self.mc = model_config(cfg, self.tok.vocab_size)
        self.model = self._model(init_from)
        self.n_params = self.model.num_params()
        self.micro = cfg.micro_batch or cfg.batch_size // self.world
        if cfg.batch_size % (self.micro * self.world):
            raise ConfigError(f"batch size {cfg.batch_size} is not a multiple of micro batch {self.micro} x "
                              f"{self.world} GPUs")
        self.accum = cfg.batch_size // (self.micro * self.world)
        self.opt = self._optimizer()
        self.state = self._resume(command)
        self._step_function()
        self._data()
        self.peak = peak_flops(self.dev, cfg.peak_tflops)
        self.tokens_per_step = cfg.batch_size * cfg.seq_len
        self.meta = model_meta(out, mcfg, cfg)
        self._log_setup()

    # -- set-up -----------------------------------------------------------------------------------------
    def _model(self, init_from: str | None) -> DiffusionTransformer:
        torch.manual_seed(self.cfg.seed)
        model = DiffusionTransformer(self.mc)
        if init_from and ckpt_dir(self.out) is None:
            src = checkpoint.load(init_from)
            if src.model.cfg != self.mc:
                raise ConfigError(f"--init-from {init_from}: its model config differs from this run's")
            model.load_state_dict(src.model.state_dict())
            self.log(f"initialised from {init_from}")
        return model.to(self.dev)

    def _optimizer(self) -> torch.optim.AdamW:
        cfg = self.cfg
        decay = [p for p in self.model.parameters() if p.dim() >= 2]
        no_decay = [p for p in self.model.parameters() if p.dim() < 2]
        return torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=1e-8, **({"fused": True} if self.cuda else {}),
        )

    def _resume(self, command: list[str] | None) -> dict:
        """The training state: from the checkpoint if there is one (weights, moments and RNG restored too),
        with this call added to the list of calls."""
        cfg = self.cfg
        state = {"step": 0, "tokens": 0, "train_seconds": 0.0, "max_steps": cfg.max_steps, "calls": 0, "last_eval": {}}
        ck = ckpt_dir(self.out)
        if ck is not None:
            state.update(load_checkpoint(ck, self.model, self.opt))
            self.log(f"resumed from {ck} at step {state['step']} ({state['tokens'] / 1e6:.1f} M tokens)")
        if cfg.max_steps:
            state["max_steps"] = cfg.max_steps  # an explicit horizon always wins (also when resuming)
        elif not state["max_steps"] and not cfg.train_seconds:
            state["max_steps"] = max(1, int(cfg.total_tokens // (cfg.batch_size * cfg.seq_len)))
        state["calls"] = state.get("calls", 0) + 1
        state["commands"] = calls_so_far(state, self.out, command or command_line())
        if self.cuda:
            state["device"] = f"{self.world} x {torch.cuda.get_device_name(self.dev)}"
        else:
            state["device"] = f"{self.world} x cpu" if self.ddp else "cpu"
        state["commands"][-1]["device"] = state["device"]
        return state

    def _step_function(self) -> None:
        """Precision, compilation and DDP of the training step."""
        self.precision, self.precision_why = choose_precision(self.cfg.precision, self.dev, self.mc.d_model)
        self.amp = autocast(self.precision, self.dev)
        self.use_compile = compile_enabled(self.cfg.compile, self.dev, self.n_params)
        if self.use_compile:  # compiled kernels are cached next to the run: a resumed call here compiles faster
            os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str((self.out / "compile-cache").resolve()))
        self.net = LossNet(self.model, self.use_compile)
        self.fwd = self.net
        if self.ddp:
            from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: PLC0415

            self.fwd = DDP(self.net, device_ids=[self.dev.index] if self.cuda else None)

    def _data(self) -> None:
        """The training batches from this call's first step on, and the held-out evaluator (rank 0)."""
        cfg = self.cfg
        self.store = TokenStore(self.out / "data", "train")
        specials = Specials(self.tok.mask_id, self.tok.pad_id)
        source = BatchSource(self.store, self.mcfg, cfg.seq_len, self.ends_line, specials, rows=self.micro,
                             seed=cfg.seed)
        dataset = MicroBatches(source, batch_size=cfg.batch_size, micro=self.micro, accum=self.accum,
                               world=self.world, rank=self.rank)
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_size=None, sampler=CountFrom(self.state["step"] * self.accum),
            num_workers=cfg.num_workers, pin_memory=self.cuda, persistent_workers=cfg.num_workers > 0,
            prefetch_factor=4 if cfg.num_workers > 0 else None,
            generator=torch.Generator().manual_seed(cfg.seed),  # batches are seeded by index; the global RNG stays
        )
        self.evaluator = None
        if self.rank == 0 and (self.out / "data" / "index.json").is_file() and cfg.eval_rows > 0:
            try:
                self.evaluator = Evaluator(TokenStore(self.out / "data", "heldout"), self.tok, self.byte_len,
                                           self.ends_line, cfg, self.mcfg, self.dev, min(self.micro, 32))
            except ConfigError as exc:
                self.log(f"no evaluation: {exc}")

    def _log_setup(self) -> None:
        cfg, mc, dev = self.cfg, self.mc, self.dev
        self.log(f"model: {self.n_params / 1e6:.1f} M parameters ({mc.d_model}d x {mc.n_layers}L, vocab "
                 f"{mc.vocab_size}, context {mc.max_seq_len}); batch {cfg.batch_size} x {cfg.seq_len} = "
                 f"{self.tokens_per_step} tokens ({self.world} x {self.accum} x {self.micro} rows); "
                 f"{self.store.n_tokens / 1e6:.1f} M training tokens; device {dev}; "
                 f"torch.compile {'on' if self.use_compile else 'off'} (--compile {cfg.compile}); "
                 f"{self.precision} ({self.precision_why}); "
                 + (f"{torch.get_num_threads()} CPU threads; " if dev.type == "cpu" else "") +
                 f"schedule {cfg.schedule}")

    # -- the phases of a call ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start the clock and the data, and measure the untrained model (when there is time)."""
        self.clock.t_slice = time.time()
        self.steps_here = 0
        self.last_saved = self.state["step"]
        self.call_start = self.state["step"]
        self.batches = iter(self.loader)
        self.tok_s = 0.0
        self.meter = LossMeter(self.dev, self.micro)
        # compile / CUDA warm-up happen in the first step
        self.first_cost = 90.0 if self.use_compile else (10.0 if self.cuda else 1.0)
        if self.state["step"] == 0 and self.cfg.eval_rows > 0 and not self.clock.must_stop(self.first_cost + 10,
                                                                                            self.dev):
            self.evaluate()  # the untrained baseline

    def why_stop(self, stop_after: int, est: float) -> str | None:
        """Why the call must stop before the next step ("steps", "max_steps", "time_budget"), or None."""
        if stop_after and self.steps_here >= stop_after:
            return "steps"
        if self.state["step"] >= (self.state["max_steps"] or 10**12):
            return "max_steps"
        if self.clock.must_stop(est, self.dev):
            return "time_budget"
        return None

    def lr_now(self, est: float) -> float:
        """This step's learning rate; wsd with a time budget decays by the time left (Clock.decay_left)."""
        by_time = self.cfg.schedule == "wsd" and self.clock.time_budget
        decay_left = self.clock.decay_left(est, self.cfg.decay_frac) if by_time else None
        return lr_at(self.state["step"], self.cfg, self.state["max_steps"] or 10**12, call_start=self.call_start,
                     decay_left=decay_left)

    def train_step(self, lr: float) -> None:
        """One optimizer step: `accum` micro-batches (gradients synced on the last one), clip, AdamW."""
        for g in self.opt.param_groups:
            g["lr"] = lr
        for m in range(self.accum):
            b = next(self.batches)
            b = {k: v.to(self.dev, non_blocking=True) for k, v in b.items()}
            sync = contextlib.nullcontext() if (not self.ddp or m == self.accum - 1) else self.fwd.no_sync()
            with sync:
                with self.amp():
                    loss_sum, ce = self.fwd(b["ids"], b["sel"], b["targets"], b["w"])
                loss = loss_sum / (self.micro * self.accum)
                loss.backward()
            self.meter.add(b, ce)
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.state["step"] += 1
        self.state["tokens"] += self.tokens_per_step
        self.steps_here += 1
        self.meter.steps += 1

    def after_step(self, t0: float, lr: float, est: float) -> None:
        """Measure the step that began at `t0`; plan the schedule, log, evaluate and save at their intervals."""
        cfg, state, clock = self.cfg, self.state, self.clock
        planning = bool(cfg.train_seconds) and not state["max_steps"]
        if planning or state["step"] % cfg.log_every == 0 or self.steps_here <= 2:
            _device_sync(self.dev)  # the steps that plan the schedule (and the logged speed) are measured whole
        dt = time.time() - t0
        if self.steps_here > 1 or not self.use_compile:
            clock.step_times = (clock.step_times + [dt])[-50:]
            state["train_seconds"] += dt
        if planning and len(clock.step_times) >= 20:
            self._plan_schedule()
        if state["step"] % cfg.log_every == 0 or self.steps_here == 1:
            self._log_progress(lr, dt)
        if cfg.eval_every and state["step"] % cfg.eval_every == 0 and not clock.must_stop((clock.eval_est or 0.0) + est,
                                                                                           self.dev):
            self.evaluate()
        if cfg.save_every and state["step"] % cfg.save_every == 0:
            if self.rank == 0:
                clock.save_est = max(clock.save_est, 1.2 * self.save())
            self.last_saved = state["step"]
            distributed.barrier()

    def _plan_schedule(self) -> None:
        """--train-seconds: the schedule's length from the measured step time (rank 0's plan: one for all)."""
        per_step = _median(self.clock.step_times)
        planned = max(self.state["step"] + 1, int(self.cfg.train_seconds / per_step))
        self.state["max_steps"] = distributed.broadcast_int(planned, self.dev)
        self.log(f"schedule: {self.state['max_steps']} steps planned for {self.cfg.train_seconds:.0f} s at "
                 f"{per_step * 1e3:.0f} ms/step")

    def _log_progress(self, lr: float, dt: float) -> None:
        state, step_times = self.state, self.clock.step_times
        la, ca, window_steps = self.meter.read(self.ddp)
        med = _median(step_times) if step_times else dt
        self.tok_s = tok_s = self.tokens_per_step / med
        flops = train_flops(self.mc, self.n_params, seq_len=self.cfg.seq_len, tokens=self.tokens_per_step,
                            head_positions=ca[4] / window_steps)
        mfu = flops / med / (self.peak * self.world) if self.peak else None
        kinds = {KIND_NAMES[k]: la[k] / ca[k] for k in range(3) if ca[k]}
        self.log(f"step {state['step']}/{state['max_steps'] or '?'} | loss {la[3] / max(ca[3], 1):.4f} ("
                 + " ".join(f"{k[0]} {v:.3f}" for k, v in kinds.items()) + f") | lr {lr:.2e} | {tok_s / 1e3:.1f}k tok/s"
                 + (f" | MFU {100 * mfu:.1f}%" if mfu else "") + f" | {time.time() - self.clock.t_start:.0f}s",
                 kind="train", step=state["step"], tokens=state["tokens"], loss=la[3] / max(ca[3], 1),
                 **{f"loss_{k}": v for k, v in kinds.items()}, lr=lr, tok_per_s=tok_s, mfu=mfu)

    def evaluate(self) -> dict:
        """The held-out measurements (evaluator.py; rank 0), logged and kept as the state's last_eval."""
        t0 = time.time()
        res = self.evaluator.run(self.model, self.amp()) if self.evaluator is not None else {}
        self.clock.eval_est = eval_est = time.time() - t0
        if res:
            state = self.state
            state["last_eval"] = {"step": state["step"], "tokens": state["tokens"],
                                  **{k: round(v, 4) for k, v in res.items()}}
            self.log("eval " + " ".join(f"{k} {v:.4f}" for k, v in res.items()) + f" [{eval_est:.1f}s]",
                     kind="eval", **state["last_eval"])
        return res

    def save(self) -> float:
        """Write the checkpoint (rank 0 only); returns the seconds it took."""
        return save_checkpoint(self.out, self.model, self.opt, self.tok,
                               saved_state(self.state, self.micro, self.accum, self.world), self.meta)

    def finish(self, stopped_by: str) -> RunResult:
        """Measure (if there is time), save, report. Only rank 0 evaluates and saves; the others wait."""
        state, clock = self.state, self.clock
        closing_eval = clock.eval_est if clock.eval_est is not None else 20.0
        if state["step"] > 0 and clock.remaining() > closing_eval + clock.save_est + clock.margin / 2:
            if not state["last_eval"] or state["last_eval"].get("step") != state["step"]:
                self.evaluate()
        if self.rank == 0 and (state["step"] != self.last_saved or ckpt_dir(self.out) is None):
            self.save()
        distributed.barrier()
        self.log(f"stopped ({stopped_by}) at step {state['step']}, {state['tokens'] / 1e6:.1f} M tokens seen; "
                 f"{time.time() - clock.t_slice:.0f}s this call, {time.time() - clock.t_start:.0f}s since start")
        del self.batches, self.loader
        torch.set_num_threads(self.threads)
        return RunResult(state["step"], stopped_by, state["last_eval"], self.tok_s, state["max_steps"])


def train_loop(out: Path, dcfg: DataConfig, mcfg: MaskingConfig, cfg: TrainConfig, *, time_budget: float = 0.0,
               t_start: float | None = None, device: str | None = None, init_from: str | None = None,
               stop_after: int = 0, budget_margin: float = 15.0, quiet: bool = False,
               command: list[str] | None = None) -> RunResult:
    """Train (or continue training) the run in `out`, whose data is already prepared.

    time_budget: seconds since `t_start` after which the process must have saved and returned; steps,
    evaluation and the final save are planned against measured durations. stop_after: stop after this
    many steps in this call (tests). command: this call's command line, kept in the checkpoint's list
    of calls (default: from sys.argv). Returns where it stopped.

    Under torchrun every decision that ends the loop or shapes the schedule is common to all ranks
    (distributed.py): the planned step count is rank 0's, and the time budget stops every rank as soon
    as one must stop.
    """
    clock = Clock(t_start=t_start or time.time(), time_budget=time_budget, margin=budget_margin, save_est=0.0)
    trainer = Trainer(out, mcfg, cfg, clock=clock, device=device, init_from=init_from, quiet=quiet, command=command)
    clock.save_est = 0.5 + trainer.n_params * 16 / 300e6  # weights + 2 Adam moments, fp32, ~300 MB/s (then measured)
    trainer.start()
    while True:
        est = clock.step_estimate(trainer.first_cost)
        stopped_by = trainer.why_stop(stop_after, est)
        if stopped_by:
            return trainer.finish(stopped_by)
        t0 = time.time()
        lr = trainer.lr_now(est)
        trainer.train_step(lr)
        trainer.after_step(t0, lr, est)
