"""`diffucode train`: corpus → tokenizer → token shards → training (resumable, time-boxed) → export.

One command does everything and picks up where the last call stopped:

    diffucode train --out runs/small --preset small --time-budget 540

The run folder holds run.json (the settings fixed at the first call), tokenizer.json, data/ (data.py),
ckpt/ (the latest checkpoint: a model folder written by checkpoint.save plus state.safetensors and
state.json for the optimizer, step, RNG and data position; no pickle) and metrics.jsonl.

Speed on a GPU: bf16 autocast, fused AdamW, `torch.compile` of the transformer trunk (static shapes)
and of the output head (dynamic in the number of predicted positions: the vocabulary projection and
cross-entropy run only where the loss is taken, ~half the tokens, which saves ~20 % of the FLOPs of a
small model). Multi-GPU: `torchrun --nproc_per_node N -m diffucode.train ...` (DDP; distributed.py keeps
the ranks' decisions common).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from diffucode import checkpoint, distributed
from diffucode.devices import resolve_device
from diffucode.data import DataConfig, TokenStore, check_inputs, find_bench_data, prepare, token_tables
from diffucode.errors import CheckpointError, ConfigError
from diffucode.masking import KIND_NAMES, BatchSource, MaskingConfig, Specials, heldout_windows
from diffucode.cpu_runtime import autocast, choose_precision, compile_pays, cpu_threads
from diffucode.model import PRESETS, DiffusionTransformer, ModelConfig, preset
from diffucode.schedule import cosine_lr, decay_left_by_steps, decay_left_by_time, wsd_lr
from diffucode.train_config import (  # noqa: F401 (COMPILE_MODES, SECTIONS, SMOKE, compile_mode: part of this module's API)
    COMPILE_MODES,
    FIXED,
    SECTIONS,
    SMOKE,
    TrainConfig,
    add_arguments,
    compile_mode,
    resolve,
)
from diffucode.train_config import register as _register
from diffucode.tokenizer import Tokenizer

STATE_VERSION = 1
# Dense bf16 peak FLOP/s by device name (first match wins); --peak-tflops overrides.
PEAK_TFLOPS = (("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("GH200", 989.0), ("A100", 312.0),
               ("L40S", 362.0), ("A10G", 125.0), ("L4", 121.0), ("4090", 165.0))


def compile_enabled(mode: str, device: torch.device, n_params: int = 0) -> bool:
    """Whether the training step is compiled: `auto` on CUDA, and on a CPU where it pays
    (cpu_runtime.compile_pays: not for tiny models, whose build takes longer than a smoke run); `on`
    forces it anywhere, so the compiled step can be tested without a GPU."""
    return mode == "on" or (mode == "auto" and compile_pays(device, n_params)[0])


# -- model pieces used by the training step ------------------------------------------------------------
def hidden_states(model: DiffusionTransformer, ids: torch.Tensor) -> torch.Tensor:
    """(B, T) ids -> (B, T, D) final normed hidden states (a plain function so torch.compile can wrap it;
    tests/test_training.py checks that lm_head(hidden_states) equals model(ids))."""
    return model.hidden(ids)


def head_loss(weight: torch.Tensor, h: torch.Tensor, sel: torch.Tensor, targets: torch.Tensor, w: torch.Tensor):
    """Cross-entropy only at the N selected positions. h (B, T, D); sel, targets, w (N,). Returns (Σ w·CE, CE (N,))."""
    hs = h.flatten(0, 1).index_select(0, sel)  # (N, D)
    logits = F.linear(hs, weight).float()  # (N, V)
    ce = F.cross_entropy(logits, targets, reduction="none")  # (N,)
    return (ce * w).sum(), ce


class LossNet(nn.Module):
    """Wraps the model so that DDP sees one forward; the trunk and the head are compiled separately
    (the trunk has static shapes, the head is dynamic in N)."""

    def __init__(self, model: DiffusionTransformer, compile: bool):
        super().__init__()
        self.model = model
        self.trunk = torch.compile(hidden_states) if compile else hidden_states
        self.head = torch.compile(head_loss, dynamic=True) if compile else head_loss

    def forward(self, ids, sel, targets, w):
        h = self.trunk(self.model, ids)
        return self.head(self.model.lm_head.weight, h, sel, targets, w)


def lr_at(step: int, cfg: TrainConfig, max_steps: int, *, call_start: int = 0, decay_left: float | None = None) -> float:
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


def train_flops(mc: ModelConfig, n_params: int, *, seq_len: int, tokens: float, head_positions: float) -> float:
    """FLOPs of one training step (forward + backward) over `tokens` input tokens in rows of `seq_len`,
    of which `head_positions` go through the output head.

    The usual MFU count is 6·N per token plus attention, with N all parameters; here the output head
    (the vocab × d_model projection, tied to the embedding) runs only where the loss is taken (about
    half of the tokens), and the embedding lookup is no matmul, so counting 6·N for every token would
    overstate MFU. Counted instead:
      * 6 · (non-embedding parameters) per token: the transformer blocks' matmuls;
      * 12 · n_layers · d_model · seq_len per token: attention scores and values (PaLM, Chowdhery et
        al. 2022, appendix B: 2 matmuls of 2·T·d per layer, × 3 for forward + backward; bidirectional
        attention, so no causal halving);
      * 6 · vocab · d_model per head position: the output projection.
    """
    embed = mc.vocab_size * mc.d_model
    trunk = n_params - embed * (1 if mc.tie_embeddings else 2)
    attention = 12.0 * mc.n_layers * mc.d_model * seq_len
    return (6.0 * trunk + attention) * tokens + 6.0 * embed * head_positions


def peak_flops(device: torch.device, override: float) -> float | None:
    if override > 0:
        return override * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, tf in PEAK_TFLOPS:
        if key in name:
            return tf * 1e12
    return None


# -- data loading ---------------------------------------------------------------------------------------
class MicroBatches(torch.utils.data.Dataset):
    """Item i = micro-batch m of step s (i = s * accum + m) for this rank, as tensors.

    Rows are addressed globally (step * batch_size + ...), so the same step reads the same rows after a
    resume, whatever the number of workers."""

    def __init__(self, source: BatchSource, *, batch_size: int, micro: int, accum: int, world: int, rank: int):
        self.source, self.batch_size, self.micro, self.accum, self.world, self.rank = source, batch_size, micro, accum, world, rank

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, i: int) -> dict:
        step, m = divmod(int(i), self.accum)
        first = step * self.batch_size + (m * self.world + self.rank) * self.micro
        b = self.source.batch(first // self.micro)  # rows first … first + micro - 1
        flat_w = b.weights.reshape(-1)
        sel = np.flatnonzero(flat_w > 0)
        return {
            "ids": torch.from_numpy(b.ids),
            "sel": torch.from_numpy(sel),
            "targets": torch.from_numpy(b.targets.reshape(-1)[sel]),
            "w": torch.from_numpy(flat_w[sel]),
            "row_of": torch.from_numpy(sel // b.ids.shape[1]),
            "kind": torch.from_numpy(b.kind.astype(np.int64)),
        }


class _From(torch.utils.data.Sampler):
    def __init__(self, start: int):
        self.start = start

    def __iter__(self):
        i = self.start
        while True:
            yield i
            i += 1

    def __len__(self) -> int:
        return 2**62


# -- evaluation -----------------------------------------------------------------------------------------
class Evaluator:
    """Fixed held-out measurements: ELBO (bits/token, bits/byte), masked CE at fixed t, and a
    single-line infill check with the true length (oracle) and with a fixed 32-position hole (auto)."""

    def __init__(self, store: TokenStore, tok: Tokenizer, byte_len: np.ndarray, ends_line: np.ndarray, cfg: TrainConfig,
                 mcfg: MaskingConfig, device: torch.device, micro: int):
        self.tok, self.cfg, self.device, self.micro = tok, cfg, device, max(1, micro)
        toks, real = heldout_windows(store, cfg.seq_len, cfg.eval_rows, pad=tok.pad_id)
        self.toks, self.real = torch.from_numpy(toks), torch.from_numpy(real)
        self.bytes = float(byte_len[toks[real]].sum())
        self.eps = mcfg.eps
        self.infill = self._infill_cases(toks, real, ends_line, cfg.infill_rows)

    def _infill_cases(self, toks, real, ends_line, n) -> list[tuple[int, int, int]]:
        """(row, a, b): one whole line of 2..24 tokens in the middle half of each window."""
        rng = np.random.default_rng(7)
        T = toks.shape[1]
        cases = []
        for i in range(len(toks)):
            if len(cases) >= n or not real[i].all():
                continue
            starts = 1 + np.flatnonzero(ends_line[toks[i]])
            starts = starts[(starts >= T // 4) & (starts < 3 * T // 4)]
            pairs = [(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:]) if 2 <= b - a <= 24
                     and self.tok.decode(toks[i, a:b].tolist()).strip()]
            if pairs:
                cases.append((i, *pairs[int(rng.integers(0, len(pairs)))]))
        return cases

    @torch.no_grad()
    def run(self, model: DiffusionTransformer, amp) -> dict:
        was_training = model.training
        model.eval()
        out: dict = {}
        gen = torch.Generator().manual_seed(1234)
        N = len(self.toks)
        nats, ntok = 0.0, float(self.real.sum())
        for k in range(2):  # two stratified passes of t over the rows
            t = ((torch.arange(N) + 0.5 + k / 2) / N) % 1.0
            t = t.clamp(min=self.eps)
            m = (torch.rand(self.toks.shape, generator=gen) < t[:, None]) & self.real
            ce = self._ce(model, amp, m)
            nats += float((ce / t[:, None]).sum())
        elbo = nats / 2 / max(ntok, 1)
        out["elbo_bpt"] = elbo / math.log(2)
        out["elbo_bpb"] = nats / 2 / math.log(2) / max(self.bytes, 1)
        for t in (0.15, 0.5, 0.85):
            m = (torch.rand(self.toks.shape, generator=gen) < t) & self.real
            ce = self._ce(model, amp, m)
            out[f"ce_t{int(t * 100):02d}_bpt"] = float(ce.sum()) / max(int(m.sum()), 1) / math.log(2)
        if self.infill:
            out.update(self._infill(model, amp))
        if was_training:
            model.train()
        return out

    def _ce(self, model, amp, m: torch.Tensor) -> torch.Tensor:
        """(N, T) CE at masked positions (0 elsewhere)."""
        res = torch.zeros(self.toks.shape)
        for s in range(0, len(self.toks), self.micro):
            ids = self.toks[s : s + self.micro].to(self.device)
            mm = m[s : s + self.micro].to(self.device)
            with amp:
                logits = model(torch.where(mm, self.tok.mask_id, ids))
            ce = F.cross_entropy(logits.float().transpose(1, 2), ids, reduction="none")
            res[s : s + self.micro] = (ce * mm).cpu()
        return res

    def _infill(self, model, amp) -> dict:
        from diffucode.denoiser import NativeDenoiser  # noqa: PLC0415
        from diffucode.sampler import sample  # noqa: PLC0415

        den = NativeDenoiser(model, self.tok)
        tail = [i for i in (self.tok.pad_id, self.tok.eos_id) if i is not None]
        T = self.toks.shape[1]
        res = {}
        for name, fixed in (("oracle", None), ("auto", 32)):
            exact = length_ok = 0
            rows, truths, holes = [], [], []
            for i, a, b in self.infill:
                H = fixed or (b - a)
                row = torch.cat([self.toks[i, :a], torch.full((H,), self.tok.mask_id), self.toks[i, b:]])[:T]
                rows.append(row)
                truths.append(self.toks[i, a:b].tolist())
                holes.append((a, H))
            for s in range(0, len(rows), self.micro):
                ids = torch.stack(rows[s : s + self.micro]).to(self.device)
                with amp:
                    got = sample(den, ids, steps=max(h for _, h in holes[s : s + self.micro]), strategy="confidence",
                                 tail_ids=tail).ids.cpu()
                for r in range(len(ids)):
                    a, H = holes[s + r]
                    gen_toks = got[r, a : a + H].tolist()
                    n = next((j for j, x in enumerate(gen_toks) if x in tail), H)
                    truth = truths[s + r]
                    length_ok += n == len(truth)
                    exact += self.tok.decode(gen_toks[:n]).rstrip() == self.tok.decode(truth).rstrip()
            res[f"infill_{name}_exact"] = exact / len(rows)
            if fixed:
                res[f"infill_{name}_len_ok"] = length_ok / len(rows)
        return res


# -- checkpoints ----------------------------------------------------------------------------------------
def _ckpt_dir(out: Path) -> Path | None:
    """The latest complete checkpoint folder (ckpt/, or ckpt.old/ if a save was cut off mid-swap)."""
    for name in ("ckpt", "ckpt.old"):
        d = out / name
        if (d / "state.json").is_file() and (d / "config.json").is_file():
            return d
    return None


def save_checkpoint(out: Path, model, opt, tok: Tokenizer, state: dict, meta: dict) -> float:
    """Write ckpt.tmp/ completely, then swap it in (ckpt → ckpt.old → removed). Returns seconds taken."""
    t0 = time.time()
    tmp, cur, old = out / "ckpt.tmp", out / "ckpt", out / "ckpt.old"
    shutil.rmtree(tmp, ignore_errors=True)
    checkpoint.save(tmp, model, tok, meta=meta)
    tensors: dict[str, torch.Tensor] = {}
    names = {p: n for n, p in model.named_parameters()}
    for p, st in opt.state.items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"opt.{names[p]}.{k}"] = v
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    checkpoint.save_tensors(tmp / "state.safetensors", tensors)
    (tmp / "state.json").write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")
    if cur.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(cur, old)
    os.replace(tmp, cur)
    shutil.rmtree(old, ignore_errors=True)
    return time.time() - t0


def load_checkpoint(folder: Path, model, opt) -> dict:
    """Restore model weights, optimizer moments and RNG from `folder`; returns state.json's content."""
    ck = checkpoint.load(folder)
    model.load_state_dict(ck.model.state_dict())
    tensors = checkpoint.load_tensors(folder / "state.safetensors")
    names = {n: p for n, p in model.named_parameters()}
    for key, v in tensors.items():
        if key.startswith("opt."):
            pname, slot = key[4:].rsplit(".", 1)
            if pname not in names:
                raise CheckpointError(f"optimizer state for unknown parameter {pname}")
            p = names[pname]
            dev = p.device if slot != "step" or opt.defaults.get("fused") or opt.defaults.get("capturable") else "cpu"
            opt.state[p][slot] = v.to(dev)
    if "rng.cpu" in tensors:
        torch.set_rng_state(tensors["rng.cpu"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    return json.loads((folder / "state.json").read_text())


# -- the loop ------------------------------------------------------------------------------------------
@dataclass
class RunResult:
    step: int
    stopped_by: str  # "max_steps", "time_budget", "steps"
    last_eval: dict
    tok_per_s: float
    max_steps: int = 0  # the schedule's length (0: not planned yet)


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


def _commands(state: dict, out: Path, argv: list[str]) -> list[dict]:
    """Every training call of the run so far plus this one: {"step": where it started, "argv": ...}.

    The list starts with the call that created the run folder (run.json's command) when that is not
    this call: a `--prepare-only` call whose data flags the training calls do not repeat, a call
    stopped before its first checkpoint, or the calls of a checkpoint written before calls were
    recorded (of those, only the first is known)."""
    calls = list(state.get("commands") or [])
    if not calls:
        run = json.loads((out / "run.json").read_text()) if (out / "run.json").is_file() else {}
        if run.get("command") and run["command"] != list(argv):
            calls.append({"step": 0, "argv": run["command"]})
    return calls + [{"step": state["step"], "argv": list(argv)}]


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
    t_start = t_start or time.time()
    world, rank = distributed.world_size(), distributed.rank()
    ddp = world > 1
    dev = distributed.init(device) if ddp else torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = dev.type == "cuda"
    log = _log_fn(out, rank, quiet)
    threads = torch.get_num_threads()
    if dev.type == "cpu":  # one thread per core (more oversubscribe and are several times slower)
        torch.set_num_threads(cfg.threads or cpu_threads(world))
        torch.set_flush_denormal(True)
    if cuda:
        torch.set_float32_matmul_precision("high")  # TF32 for the few fp32 matmuls left outside autocast

    tok = Tokenizer.from_file(out / "tokenizer.json")
    byte_len, ends_line = token_tables(tok)
    mc = model_config(cfg, tok.vocab_size)
    torch.manual_seed(cfg.seed)
    model = DiffusionTransformer(mc)
    if init_from and _ckpt_dir(out) is None:
        src = checkpoint.load(init_from)
        if src.model.cfg != mc:
            raise ConfigError(f"--init-from {init_from}: its model config differs from this run's")
        model.load_state_dict(src.model.state_dict())
        log(f"initialised from {init_from}")
    model.to(dev)
    n_params = model.num_params()

    micro = cfg.micro_batch or cfg.batch_size // world
    if cfg.batch_size % (micro * world):
        raise ConfigError(f"batch size {cfg.batch_size} is not a multiple of micro batch {micro} x {world} GPUs")
    accum = cfg.batch_size // (micro * world)

    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=1e-8, **({"fused": True} if cuda else {}),
    )
    state = {"step": 0, "tokens": 0, "train_seconds": 0.0, "max_steps": cfg.max_steps, "calls": 0, "last_eval": {}}
    ck = _ckpt_dir(out)
    if ck is not None:
        state.update(load_checkpoint(ck, model, opt))
        log(f"resumed from {ck} at step {state['step']} ({state['tokens'] / 1e6:.1f} M tokens)")
    if cfg.max_steps:
        state["max_steps"] = cfg.max_steps  # an explicit horizon always wins (also when resuming)
    elif not state["max_steps"] and not cfg.train_seconds:
        state["max_steps"] = max(1, int(cfg.total_tokens // (cfg.batch_size * cfg.seq_len)))
    state["calls"] = state.get("calls", 0) + 1
    state["commands"] = _commands(state, out, command or _command_line())
    state["device"] = f"{world} x {torch.cuda.get_device_name(dev)}" if cuda else (f"{world} x cpu" if ddp else "cpu")
    state["commands"][-1]["device"] = state["device"]

    precision, precision_why = choose_precision(cfg.precision, dev, mc.d_model)
    amp = autocast(precision, dev)
    use_compile = compile_enabled(cfg.compile, dev, n_params)
    if use_compile:  # compiled kernels are cached next to the run: a resumed call on the same machine compiles faster
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str((out / "compile-cache").resolve()))
    net = LossNet(model, use_compile)
    fwd = net
    if ddp:
        from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: PLC0415

        fwd = DDP(net, device_ids=[dev.index] if cuda else None)

    store = TokenStore(out / "data", "train")
    specials = Specials(tok.mask_id, tok.pad_id)
    source = BatchSource(store, mcfg, cfg.seq_len, ends_line, specials, rows=micro, seed=cfg.seed)
    dataset = MicroBatches(source, batch_size=cfg.batch_size, micro=micro, accum=accum, world=world, rank=rank)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=None, sampler=_From(state["step"] * accum), num_workers=cfg.num_workers,
        pin_memory=cuda, persistent_workers=cfg.num_workers > 0, prefetch_factor=4 if cfg.num_workers > 0 else None,
        generator=torch.Generator().manual_seed(cfg.seed),  # batches are seeded by index; keep the global RNG untouched
    )
    evaluator = None
    if rank == 0 and (out / "data" / "index.json").is_file() and cfg.eval_rows > 0:
        try:
            evaluator = Evaluator(TokenStore(out / "data", "heldout"), tok, byte_len, ends_line, cfg, mcfg, dev, min(micro, 32))
        except ConfigError as exc:
            log(f"no evaluation: {exc}")

    peak = peak_flops(dev, cfg.peak_tflops)
    tokens_per_step = cfg.batch_size * cfg.seq_len
    meta = _model_meta(out, mcfg, cfg)
    log(f"model: {n_params / 1e6:.1f} M parameters ({mc.d_model}d x {mc.n_layers}L, vocab {mc.vocab_size}, context {mc.max_seq_len}); "
        f"batch {cfg.batch_size} x {cfg.seq_len} = {tokens_per_step} tokens ({world} x {accum} x {micro} rows); "
        f"{store.n_tokens / 1e6:.1f} M training tokens; device {dev}; "
        f"torch.compile {'on' if use_compile else 'off'} (--compile {cfg.compile}); {precision} ({precision_why}); "
        f"{torch.get_num_threads() if dev.type == 'cpu' else ''}{' CPU threads; ' if dev.type == 'cpu' else ''}"
        f"schedule {cfg.schedule}")

    save_est = 0.5 + n_params * 16 / 300e6  # weights + 2 Adam moments, fp32, ~300 MB/s (then measured)
    eval_est = None
    step_times: list[float] = []
    stopped_by = "steps"
    last_saved = state["step"]
    t_slice = time.time()
    steps_here = 0
    it = iter(loader)
    tok_s = 0.0
    loss_acc = torch.zeros(4, device=dev)  # Σ loss over rows of each kind (0..2) + total
    cnt_acc = torch.zeros(5, device=dev)  # rows of each kind (0..2) + total, and [4] positions through the head
    window_steps = 0  # steps since the last log line

    def remaining() -> float:
        return time_budget - (time.time() - t_start) if time_budget else float("inf")

    def should_stop(next_cost: float) -> bool:
        """Whether the budget leaves too little for `next_cost` + a save; common to all ranks."""
        return distributed.any_rank(remaining() < next_cost + save_est + budget_margin, dev)

    def run_eval() -> dict:
        nonlocal eval_est
        t0 = time.time()
        res = evaluator.run(model, amp()) if evaluator is not None else {}
        eval_est = time.time() - t0
        if res:
            state["last_eval"] = {"step": state["step"], "tokens": state["tokens"], **{k: round(v, 4) for k, v in res.items()}}
            log("eval " + " ".join(f"{k} {v:.4f}" for k, v in res.items()) + f" [{eval_est:.1f}s]", kind="eval", **state["last_eval"])
        return res

    def decay_left_now(step_cost: float) -> float | None:
        """wsd with a time budget: the share of the decay window left before the call must stop
        training (the stop rule of should_stop, plus the closing evaluation); None: by steps."""
        if cfg.schedule != "wsd" or not time_budget:
            return None
        stop_at = t_start + time_budget - step_cost - save_est - budget_margin - (eval_est or 0.0)
        return decay_left_by_time(time.time(), call_start=t_slice, call_end=stop_at, decay_frac=cfg.decay_frac)

    call_start = state["step"]
    first_cost = 90.0 if use_compile else (10.0 if cuda else 1.0)  # compile / CUDA warm-up happen in the first step
    if state["step"] == 0 and cfg.eval_rows > 0 and not should_stop(first_cost + 10):
        run_eval()  # the untrained baseline
    while True:
        max_steps = state["max_steps"] or 10**12
        if stop_after and steps_here >= stop_after:
            break
        if state["step"] >= max_steps:
            stopped_by = "max_steps"
            break
        est = _median(step_times) * 1.5 if step_times else first_cost
        if should_stop(est):
            stopped_by = "time_budget"
            break
        t0 = time.time()
        lr = lr_at(state["step"], cfg, max_steps, call_start=call_start, decay_left=decay_left_now(est))
        for g in opt.param_groups:
            g["lr"] = lr
        for m in range(accum):
            b = next(it)
            b = {k: v.to(dev, non_blocking=True) for k, v in b.items()}
            sync = contextlib.nullcontext() if (not ddp or m == accum - 1) else fwd.no_sync()
            with sync:
                with amp():
                    loss_sum, ce = fwd(b["ids"], b["sel"], b["targets"], b["w"])
                loss = loss_sum / (micro * accum)
                loss.backward()
            with torch.no_grad():
                per_row = torch.zeros(micro, device=dev).index_add_(0, b["row_of"], ce.detach() * b["w"])
                loss_acc.index_add_(0, b["kind"], per_row)
                cnt_acc.index_add_(0, b["kind"], torch.ones_like(per_row))
                loss_acc[3] += per_row.sum()
                cnt_acc[3] += micro
                cnt_acc[4] += b["sel"].numel()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        state["step"] += 1
        state["tokens"] += tokens_per_step
        steps_here += 1
        window_steps += 1
        planning = bool(cfg.train_seconds) and not state["max_steps"]
        if planning or state["step"] % cfg.log_every == 0 or steps_here <= 2:
            _device_sync(dev)  # the steps that plan the schedule (and the logged speed) are measured whole
        dt = time.time() - t0
        if steps_here > 1 or not use_compile:
            step_times = (step_times + [dt])[-50:]
            state["train_seconds"] += dt
        if planning and len(step_times) >= 20:
            per_step = _median(step_times)
            planned = max(state["step"] + 1, int(cfg.train_seconds / per_step))
            state["max_steps"] = distributed.broadcast_int(planned, dev)  # rank 0's plan: one schedule for all
            log(f"schedule: {state['max_steps']} steps planned for {cfg.train_seconds:.0f} s at {per_step * 1e3:.0f} ms/step")
        if state["step"] % cfg.log_every == 0 or steps_here == 1:
            if ddp:
                torch.distributed.all_reduce(loss_acc)
                torch.distributed.all_reduce(cnt_acc)
            la, ca = loss_acc.tolist(), cnt_acc.tolist()
            loss_acc.zero_()
            cnt_acc.zero_()
            med = _median(step_times) if step_times else dt
            tok_s = tokens_per_step / med
            flops = train_flops(mc, n_params, seq_len=cfg.seq_len, tokens=tokens_per_step, head_positions=ca[4] / window_steps)
            mfu = flops / med / (peak * world) if peak else None
            window_steps = 0
            kinds = {KIND_NAMES[k]: la[k] / ca[k] for k in range(3) if ca[k]}
            log(f"step {state['step']}/{state['max_steps'] or '?'} | loss {la[3] / max(ca[3], 1):.4f} ("
                + " ".join(f"{k[0]} {v:.3f}" for k, v in kinds.items()) + f") | lr {lr:.2e} | {tok_s / 1e3:.1f}k tok/s"
                + (f" | MFU {100 * mfu:.1f}%" if mfu else "") + f" | {time.time() - t_start:.0f}s",
                kind="train", step=state["step"], tokens=state["tokens"], loss=la[3] / max(ca[3], 1),
                **{f"loss_{k}": v for k, v in kinds.items()}, lr=lr, tok_per_s=tok_s, mfu=mfu)
        if cfg.eval_every and state["step"] % cfg.eval_every == 0 and not should_stop((eval_est or 0.0) + est):
            run_eval()
        if cfg.save_every and state["step"] % cfg.save_every == 0:
            if rank == 0:
                save_est = max(save_est, 1.2 * save_checkpoint(out, model, opt, tok, _state_out(state, micro, accum, world), meta))
            last_saved = state["step"]
            distributed.barrier()
    # Stop: measure (if there is time), save, report. Only rank 0 evaluates and saves; the others wait.
    if state["step"] > 0 and remaining() > (eval_est if eval_est is not None else 20.0) + save_est + budget_margin / 2:
        if not state["last_eval"] or state["last_eval"].get("step") != state["step"]:
            run_eval()
    if rank == 0 and (state["step"] != last_saved or _ckpt_dir(out) is None):
        save_checkpoint(out, model, opt, tok, _state_out(state, micro, accum, world), meta)
    distributed.barrier()
    log(f"stopped ({stopped_by}) at step {state['step']}, {state['tokens'] / 1e6:.1f} M tokens seen; "
        f"{time.time() - t_slice:.0f}s this call, {time.time() - t_start:.0f}s since start")
    del it, loader
    torch.set_num_threads(threads)
    return RunResult(state["step"], stopped_by, state["last_eval"], tok_s, state["max_steps"])


def _state_out(state: dict, micro: int, accum: int, world: int) -> dict:
    return {**state, "version": STATE_VERSION, "micro_batch": micro, "accum": accum, "world_size": world,
            "saved_at": time.strftime("%Y-%m-%d %H:%M:%S")}


def _model_meta(out: Path, mcfg: MaskingConfig, cfg: TrainConfig) -> dict:
    """config.json entries besides the model: the infill conventions the engine relies on, and how it
    was trained ("command": the call that created the run; export adds "commands": every training call)."""
    run = json.loads((out / "run.json").read_text()) if (out / "run.json").is_file() else {}
    return {
        "infill": {"pad_tail": True, "pad_token": "<|pad|>", "eos_is_pad": True, "max_extra_pad": mcfg.max_extra_pad,
                   "hole_menu": list(mcfg.hole_menu), "note": "holes = content + a contiguous tail of <|pad|> (masking.py)"},
        "training": {"objective": "masked diffusion: uniform 1/t + variable-length infill + function bodies",
                     "masking": mcfg.to_dict(), "train": asdict(cfg), "command": run.get("command")},
    }


# -- export ---------------------------------------------------------------------------------------------
def check_export_dest(dest: str | Path) -> None:
    """Refuse to export over anything but a diffucode model folder: a file, a non-empty folder of other
    files, or another kind of model would lose the user's files."""
    dest = Path(dest)
    try:
        if dest.exists() and not dest.is_dir():
            raise CheckpointError(f"export destination {dest} is a file")
        if dest.is_dir() and any(dest.iterdir()):
            fmt = checkpoint.read_config(dest).get("format") if (dest / "config.json").is_file() else None
            if fmt != checkpoint.FORMAT:
                raise CheckpointError(f"export destination {dest} is not empty and is not a diffucode model folder; "
                                      "export to a new folder")
    except OSError as exc:
        raise CheckpointError(f"export destination {dest}: {exc.strerror or exc}") from exc


def export(run_dir: str | Path, dest: str | Path, *, dtype: torch.dtype = torch.float16, max_total_mb: float = 64.0,
           log=print) -> Path:
    """Write the run's latest checkpoint as an inference folder (float16 safetensors shards < 15 MB,
    tokenizer, config.json with the infill conventions, README.md model card)."""
    run_dir, dest = Path(run_dir), Path(dest)
    ck_dir = _ckpt_dir(run_dir)
    if ck_dir is None:
        raise CheckpointError(f"{run_dir} has no checkpoint to export")
    ck = checkpoint.load(ck_dir)
    state = json.loads((ck_dir / "state.json").read_text())
    run = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
    index = json.loads((run_dir / "data" / "index.json").read_text()) if (run_dir / "data" / "index.json").is_file() else {}
    meta = {k: v for k, v in ck.meta.items() if k not in ("format", "format_version", "model_type", "architecture", "torch_dtype")}
    meta.setdefault("training", {})
    meta["training"].update({"steps": state["step"], "tokens_seen": state["tokens"], "train_seconds": round(state.get("train_seconds", 0), 1),
                             "commands": state.get("commands", []), "eval": state.get("last_eval", {}),
                             "data": index.get("stats", {})})
    if run.get("init_from"):
        meta["training"]["init_from"] = run["init_from"]
    check_export_dest(dest)
    dest.mkdir(parents=True, exist_ok=True)
    checkpoint.save(dest, ck.model, ck.tokenizer, meta=meta, dtype=dtype)
    (dest / "README.md").write_text(_model_card(ck, state, run, index), encoding="utf-8")
    sizes = {p.name: p.stat().st_size for p in dest.iterdir() if p.is_file()}
    big = [n for n, s in sizes.items() if s >= 15 * 10**6]
    if big:
        raise CheckpointError(f"exported files over 15 MB: {big}")
    total = sum(sizes.values())
    log(f"exported step {state['step']} to {dest}: {len(sizes)} files, {total / 1e6:.1f} MB")
    if total > max_total_mb * 1e6:
        log(f"warning: {total / 1e6:.1f} MB exceeds the {max_total_mb:.0f} MB budget of the embedded model")
    return dest


def _model_card(ck, state: dict, run: dict, index: dict) -> str:
    mc = ck.model.cfg
    ev = state.get("last_eval", {})
    stats = index.get("stats", {})
    corpus = index.get("corpus", {})
    tr = stats.get("train", {})
    rows = "\n".join(f"| {k} | {v} |" for k, v in ev.items())
    return f"""# diffucode default model
{_cpu_status(state, run)}
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
{tr.get('docs', '?')} training files, {_millions(tr.get('tokens'))} M tokens, {_millions(tr.get('bytes'))} MB of source from
{', '.join(corpus.get('sources', [])) or 'the training machine'}; deduplicated by content, filtered (tiny, huge,
minified, generated, non-UTF-8), {_decontamination(corpus)}
(rejected: {corpus.get('rejected', {})}).
Held out: {stats.get('heldout', {}).get('docs', '?')} files by a hash of their path.

## Training
{state['step']} steps, {_millions(state.get('tokens'))} M tokens seen, {_minutes(state.get('train_seconds'))} min of training
on {' and '.join(_devices(state)) or '?'} over {state.get('calls', 1)} call(s). Objective (diffucode/masking.py): uniform masking with 1/t weights,
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
{_lineage_text(run.get("init_from"))}"""


def _cpu_status(state: dict, run: dict) -> str:
    """A warning at the top of the card of a model trained only on CPUs (the interim embedded model):
    every call that trained it, those of the models it started from (--init-from) included."""
    devices = set(_devices(state))
    for init in _generations(run.get("init_from")):
        devices.update(c["device"] for c in init.get("commands") or [] if c.get("device"))
    if not devices or not all(d.endswith("cpu") for d in devices):
        return ""
    return (f"\n{checkpoint.INTERIM_MARKER} This model was trained on a CPU, so it is small and briefly trained; its measured "
            "numbers are below. Pass `--model` to use a stronger one (docs/models.md).\n")


def _generations(init: dict | None):
    """The models a run started from (run.json `init_from`), nearest first."""
    while init:
        yield init
        init = init.get("init_from")


def _devices(state: dict) -> list[str]:
    """The devices this run's calls trained on, in order of first use (the last call's alone for a
    checkpoint written before calls recorded theirs)."""
    found = [c["device"] for c in state.get("commands") or [] if c.get("device")]
    return list(dict.fromkeys(found or ([state["device"]] if state.get("device") else [])))


def _millions(n: float | None) -> str:
    """A count in millions for the card; '?' where the number was not recorded (not a misleading 0.0)."""
    return "?" if n is None else f"{n / 1e6:.1f}"


def _minutes(seconds: float | None) -> str:
    return "?" if seconds is None else f"{seconds / 60:.1f}"


LINEAGE_KEYS = ("steps", "tokens_seen", "train_seconds", "commands", "command", "init_from")


def lineage(folder: str | Path, config: dict) -> dict:
    """What a run started with --init-from keeps of the starting model's own training (config.json
    `training`; nested when that model was itself started from another), so the card can list it."""
    training = config.get("training") or {}
    return {"folder": str(folder), **{k: training[k] for k in LINEAGE_KEYS if k in training}}


def _lineage_text(init: dict | None) -> str:
    """The card's account of the models this one was started from (--init-from), newest first."""
    parts = []
    for gen in _generations(init):
        calls = gen.get("commands") or ([{"step": 0, "argv": gen["command"]}] if gen.get("command") else [])
        head = (f"It started from the weights of `{gen.get('folder', '?')}`, trained {gen.get('steps', '?')} steps "
                f"({_millions(gen.get('tokens_seen'))} M tokens, {_minutes(gen.get('train_seconds'))} min)")
        if calls:
            lines = [f"# call {n} of {len(calls)}, from step {c['step']}\n" + " ".join(c["argv"]) for n, c in enumerate(calls, 1)]
            parts.append(head + " by:\n```\n" + "\n".join(lines) + "\n```")
        else:
            parts.append(head + "; its training commands were not recorded.")
    return ("\n" + "\n\n".join(parts) + "\n") if parts else ""


def _decontamination(corpus: dict) -> str:
    n = corpus.get("decontamination_ngrams", 0)
    if not n:
        return "NOT decontaminated against HumanEval/MBPP (decontamination was off when the data was built)"
    return f"decontaminated against HumanEval/MBPP(+) programs ({n} line 3-grams)"


def _reproduce(state: dict, run: dict) -> str:
    """The card's list of training calls, in order, with the step each one started from."""
    calls = state.get("commands") or ([{"step": 0, "argv": run["command"]}] if run.get("command") else [])
    if not calls:
        return "The training commands were not recorded."
    lines = []
    for n, c in enumerate(calls, 1):
        lines += [f"# call {n} of {len(calls)}, from step {c['step']}", " ".join(c["argv"])]
    missing = state.get("calls", len(calls)) - len(calls)
    note = f"\n(At least {missing} more call(s) ran before calls were recorded; they are not listed.)" if missing > 0 else ""
    return ("Every call of this run, in order, with the step it started from; each call resumed the run folder where "
            "the previous one stopped (config.json `training.commands`):\n```\n" + "\n".join(lines) + "\n```" + note)


# -- command line ---------------------------------------------------------------------------------------
def register(subparsers) -> None:
    """Add `diffucode train` to the main CLI."""
    _register(subparsers, run)


def _command_line(argv: list[str] | None = None) -> list[str]:
    """This call as `diffucode train FLAGS`: from the argv main() parsed, else from sys.argv (the
    `diffucode train` entry point), where the flags follow the subcommand."""
    if argv is None:
        argv = sys.argv[1:]
        argv = argv[argv.index("train") + 1 :] if "train" in argv else argv
    return ["diffucode", "train", *argv]


def _process_start() -> float:
    """When this process started (Linux /proc; else now): the time budget counts interpreter and torch
    start-up too, which a slice's wall clock includes."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        btime = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime"))
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
            if (out / "data").is_dir():
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
    t_start = getattr(args, "t_start", None) or _process_start()
    out = Path(args.out)
    rank = distributed.rank()
    quiet = getattr(args, "quiet", False)
    say = (lambda msg: None) if quiet or rank != 0 else (lambda msg: print(msg, flush=True))
    if args.export_only:
        export(out, args.export_only, log=say)
        return 0
    if rank == 0:
        check_run_folder(out)
    if args.device:
        resolve_device(args.device)  # one line for a GPU that is not there, before any data is built
    if args.export:
        check_export_dest(args.export)  # before training, not after it
    for flag, value in (("--time-budget", args.time_budget), ("--steps", args.steps)):
        if value is not None and value < 0:
            raise ConfigError(f"{flag} must be ≥ 0 (0: no limit)")
    init_model = None  # the --init-from folder's model config, when a new run starts from it
    init_lineage = None  # what run.json records of that model's own training
    if args.init_from and _ckpt_dir(out) is None:
        src = checkpoint.read_config(args.init_from)
        if src.get("format") != checkpoint.FORMAT or "model" not in src or not (Path(args.init_from) / "tokenizer.json").is_file():
            raise CheckpointError(f"--init-from {args.init_from} is not a diffucode model folder")
        init_model = src["model"]
        init_lineage = lineage(args.init_from, src)
    run_json = out / "run.json"
    stored = json.loads(run_json.read_text()) if run_json.is_file() else None
    dcfg, mcfg, tcfg = resolve(args, stored)
    if tcfg.preset not in PRESETS:
        raise ConfigError(f"unknown preset {tcfg.preset!r}; choose from {', '.join(PRESETS)}")
    command = _command_line(getattr(args, "argv", None))
    if rank == 0:
        if getattr(args, "smoke", False) and not stored and getattr(args, "decontaminate", None) is None:
            dcfg = smoke_data(dcfg, say)
        if not stored:
            check_inputs(dcfg)  # a --sources folder that is not there: one line, before run.json exists
        copy_tokenizer = init_model is not None and not (out / "tokenizer.json").exists()
        if copy_tokenizer:
            tcfg = dataclasses.replace(tcfg, **{k: init_model[k] for k in ("d_model", "n_layers", "n_heads", "ffn_hidden")},
                                       seq_len=init_model["max_seq_len"])
        record = {"data": dcfg.to_dict(), "masking": mcfg.to_dict(), "train": asdict(tcfg),
                  "command": stored["command"] if stored else command,
                  "created": stored.get("created") if stored else time.strftime("%Y-%m-%d %H:%M:%S")}
        if stored:
            record["last_command"] = command
        if copy_tokenizer and init_lineage:
            record["init_from"] = init_lineage
        elif stored and "init_from" in stored:  # a later call of a run started from a model keeps its lineage
            record["init_from"] = stored["init_from"]
        with _undone_if_first_call_fails(out, first=not stored):
            out.mkdir(parents=True, exist_ok=True)
            run_json.write_text(json.dumps(record, indent=1) + "\n")
            if copy_tokenizer:
                shutil.copyfile(Path(args.init_from) / "tokenizer.json", out / "tokenizer.json")
            prepare(out / "data", dcfg, tokenizer_path=out / "tokenizer.json", workers=args.data_workers, log=say)
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


def main(argv: list[str] | None = None, *, t_start: float | None = None) -> int:
    """`python -m diffucode.train ...` (what torchrun runs); in-process callers' budgets count from the call."""
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


if __name__ == "__main__":
    sys.exit(main(t_start=_process_start()))
