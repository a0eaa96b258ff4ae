"""What the transformers-backed families share: lazy imports, dtype/device, memory, tokenizer, denoiser.

Nothing here imports transformers at module level; `transformers()` does, on first use, and turns a
missing or too old install into one CheckpointError line that says what to install.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import re
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

from diffucode.errors import CheckpointError, ConfigError

MIN_TRANSFORMERS = (5, 0)

INSTALL_HINT = 'pip install "diffucode[hf]"  (transformers>=5.23, huggingface_hub)'
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16, "half": torch.float16}


def transformers(min_version: tuple[int, ...] = MIN_TRANSFORMERS):
    """The transformers module, or a CheckpointError naming the install command."""
    try:
        import transformers as tf
    except ImportError as exc:
        raise CheckpointError(f"this model needs the transformers library: {INSTALL_HINT}") from exc
    have = tuple(int(x) for x in re.findall(r"\d+", tf.__version__)[:3])
    if have < tuple(min_version):
        need = ".".join(map(str, min_version))
        raise CheckpointError(f"this model needs transformers>={need}, found {tf.__version__}: {INSTALL_HINT}")
    return tf


@functools.cache
def _cache_keyword(forward) -> str:
    return "cache" if "cache" in inspect.signature(forward).parameters else "past_key_values"


def with_cache(trunk, cache) -> dict:
    """The keyword argument passing a K/V cache to a transformers model's forward: `cache` in newer
    transformers 5.x, `past_key_values` before (the old name still works there, with a warning each call)."""
    return {_cache_keyword(type(trunk).forward): cache}


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence transformers' loading chatter (progress bars, info/warnings) for one load; restore after."""
    tf = transformers()
    log = tf.utils.logging
    level, bars = log.get_verbosity(), log.is_progress_bar_enabled()
    log.set_verbosity_error()
    log.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # deprecations inside checkpoints' config keys
            yield
    finally:
        log.set_verbosity(level)
        if bars:
            log.enable_progress_bar()


# -- device, dtype, memory ----------------------------------------------------------------------------
def pick_dtype(device: torch.device, dtype: torch.dtype | str | None) -> torch.dtype:
    """Default: bfloat16 on CUDA with bf16 support, float16 on other CUDA and MPS, float32 on CPU."""
    if isinstance(dtype, str):
        if dtype.lower() not in DTYPES:
            raise ConfigError(f"unknown dtype {dtype!r}; choose from bf16, fp16, fp32")
        return DTYPES[dtype.lower()]
    if dtype is not None:
        return dtype
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32


def weight_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        if any(folder.glob("*.bin")) or any(folder.glob("*.pt")):
            raise CheckpointError(f"{folder}: only pickle weights (*.bin/*.pt); diffucode reads safetensors only")
        raise CheckpointError(f"{folder}: no *.safetensors weights")
    return files


def estimate_bytes(folder: Path, dtype: torch.dtype) -> int:
    """Bytes the weights take in `dtype`: from the safetensors headers (no tensor is read)."""
    from safetensors import safe_open

    elems = 0
    for f in weight_files(folder):
        with safe_open(str(f), framework="pt") as sf:
            for k in sf.keys():
                shape = sf.get_slice(k).get_shape()
                n = 1
                for s in shape:
                    n *= int(s)
                elems += n
    return elems * torch.empty((), dtype=dtype).element_size()


def check_memory(need: int, device: torch.device, folder: Path) -> None:
    """Refuse before loading when the device plainly lacks room: free CUDA memory (weights + ~15 % for
    activations), or on CPU/MPS the machine's physical memory (an OOM kill would say nothing)."""
    if device.type == "cuda":
        free, where = torch.cuda.mem_get_info(device)[0], f"{device} has"
    else:
        try:
            free, where = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "this machine has"
        except (ValueError, OSError, AttributeError):  # not POSIX: no cheap answer, let the load try
            return
    if need * 1.15 > free:
        raise CheckpointError(
            f"{folder}: needs about {need / 2**30:.1f} GiB for its weights in this dtype but {where} "
            f"{free / 2**30:.1f} GiB; try --dtype bf16/fp16, another --device, or a smaller model"
        )


def hf_load(cls, folder: Path, *, config, device: torch.device, dtype: torch.dtype, **kwargs):
    """`cls.from_pretrained` from a local folder, quietly, refusing silently random-initialised weights."""
    with quiet():
        try:
            model, info = cls.from_pretrained(
                str(folder), config=config, dtype=dtype, output_loading_info=True, local_files_only=True,
                device_map=None if device.type == "cpu" else {"": str(device)}, **kwargs,
            )
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise CheckpointError(f"{folder}: cannot load weights: {type(exc).__name__}: {str(exc)[:400]}") from exc
    missing = sorted(info.get("missing_keys") or [])
    unexpected = sorted(info.get("unexpected_keys") or [])
    bad = list(info.get("mismatched_keys") or [])
    if missing or unexpected or bad:
        raise CheckpointError(
            f"{folder}: weights do not match the architecture (missing {missing[:4]}, unexpected {unexpected[:4]}, "
            f"mismatched {bad[:2]}); is it really this family? (--family)"
        )
    return model.eval()


def remote_load(folder: Path, *, device: torch.device, dtype: torch.dtype):
    """The checkpoint's own modelling code (`trust_remote_code=True`, the user's explicit opt-in)."""
    tf = transformers()
    with quiet():
        try:
            model = tf.AutoModel.from_pretrained(str(folder), trust_remote_code=True, dtype=dtype,
                                                 local_files_only=True)
        except Exception as exc:  # authors' code written for older transformers fails in many ways
            raise CheckpointError(
                f"{folder}: its own modelling code failed under transformers {tf.__version__}: "
                f"{type(exc).__name__}: {str(exc)[:300]}; try without --trust-remote-code"
            ) from exc
    model = model.to(device).eval()
    model._diffucode_remote = True  # bidirectional by the authors' construction: call its forward whole
    return model


# -- tokenizer ------------------------------------------------------------------------------------------
_CONTROL = re.compile(r"^<\|.*\|>$|^<[a-z_]+>$")


class HFTextTokenizer:
    """A transformers tokenizer behind diffucode's `encode(text) -> ids` / `decode(ids) -> text`.

    No special tokens are added on encode (the infill layout is built by the caller); decode drops
    special tokens and ids past the vocabulary, so a decoded hole never shows <|mask|> or a pad.
    """

    def __init__(self, tok):
        self.tok = tok
        self.vocab_size: int = len(tok)  # includes added tokens (mask, pads, chat markers)
        added = getattr(tok, "added_tokens_decoder", {}) or {}
        self.control_ids: frozenset[int] = frozenset(
            int(i) for i, t in added.items() if getattr(t, "special", False) or _CONTROL.match(str(t))
        ) | frozenset(getattr(tok, "all_special_ids", []) or [])
        self.has_chat_template: bool = bool(getattr(tok, "chat_template", None))

    def token_id(self, token: str) -> int | None:
        """Id of `token` if the vocabulary has it as a single token, else None."""
        vocab = self.tok.get_vocab()
        return int(vocab[token]) if token in vocab else None

    def encode(self, text: str) -> list[int]:
        return list(self.tok.encode(text, add_special_tokens=False))

    def decode(self, ids: Iterable[int]) -> str:
        keep = [int(i) for i in ids if 0 <= int(i) < self.vocab_size and int(i) not in self.control_ids]
        return self.tok.decode(keep, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def chat(self, messages: list[dict], *, add_generation_prompt: bool = True) -> str:
        """The prompt text for a chat (the checkpoint's own template); ConfigError if it has none."""
        if not self.has_chat_template:
            raise ConfigError("this model has no chat template: instructions are not supported for it")
        return self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def load_tokenizer(folder: Path, *, trust_remote_code: bool = False, fallback: str | None = None) -> HFTextTokenizer:
    """The checkpoint's tokenizer without running its code unless asked.

    Checkpoints that name a remote-code tokenizer class (Dream's `DreamTokenizer`) are read with the
    generic fast tokenizer from tokenizer.json, or `fallback` (a transformers class name such as
    "Qwen2Tokenizer") from vocab.json + merges.txt: their classes only subclass those.
    """
    tf = transformers()
    named = json_file(folder / "tokenizer_config.json").get("tokenizer_class")
    readers = []  # (label, zero-argument loader), first success wins
    if trust_remote_code:
        readers.append(("AutoTokenizer", lambda: tf.AutoTokenizer.from_pretrained(
            str(folder), trust_remote_code=True, local_files_only=True)))
    if isinstance(named, str) and hasattr(tf, named):  # a class transformers ships: no config sniffing needed
        readers.append((named, lambda: getattr(tf, named).from_pretrained(str(folder), local_files_only=True)))
    if (folder / "tokenizer.json").is_file():
        readers.append(("PreTrainedTokenizerFast", lambda: tf.PreTrainedTokenizerFast.from_pretrained(
            str(folder), local_files_only=True)))
    if fallback and (folder / "vocab.json").is_file():
        readers.append((fallback, lambda: getattr(tf, fallback).from_pretrained(str(folder), local_files_only=True)))
    readers.append(("AutoTokenizer", lambda: tf.AutoTokenizer.from_pretrained(
        str(folder), trust_remote_code=False, local_files_only=True)))
    errors = []
    with quiet():
        for label, read in readers:
            try:
                return HFTextTokenizer(read())
            except Exception as exc:  # tokenizers/transformers raise many types; report them all in one line
                errors.append(f"{label}: {(str(exc).splitlines() or [type(exc).__name__])[0][:160]}")
    raise CheckpointError(f"{folder}: cannot read its tokenizer ({'; '.join(errors)})")


def special_id(tok: HFTextTokenizer, config: dict, token: str, config_key: str, what: str) -> int:
    """A special id read from the tokenizer (by its token text), else from config.json; never a literal."""
    tid = tok.token_id(token)
    if tid is not None:
        return tid
    cid = config.get(config_key)
    if isinstance(cid, int) and 0 <= cid < tok.vocab_size:
        return cid
    raise CheckpointError(f"the tokenizer has no {token} token and config.json no usable {config_key}: no {what}")


# -- denoiser -------------------------------------------------------------------------------------------
class HFDenoiser:
    """A transformers model with full attention behind the Denoiser protocol (diffucode/denoiser.py).

    shift: Dream-family checkpoints (adapted from AR Qwen2.5) predict token i at output i-1
    (Dream's `logits = cat(logits[:, :1], logits[:, :-1])`); LLaDA predicts token i at output i.
    When the model exposes `.model` (the trunk) and `.lm_head`, logits are computed only at the
    requested positions, which matters with a 152 k-entry head.
    """

    def __init__(self, model, *, shift: bool, mask_id: int, pad_id: int | None, eos_id: int | None, vocab_size: int,
                 forbidden_ids: Iterable[int], max_seq_len: int, expand_id: int | None = None,
                 delete_id: int | None = None, infill_frame: tuple[Iterable[int], Iterable[int]] = ((), ())):
        self.model = model
        self.expand_id = expand_id  # DreamOn: a mask predicted as this becomes two masks (diffucode/expand.py)
        self.delete_id = delete_id  # ... and a mask predicted as this is removed
        # ... and its infilling prompt: ids before the prefix and after the suffix (BOS, EOS), in every length mode
        self.infill_frame = (tuple(infill_frame[0]), tuple(infill_frame[1]))
        self.shift = shift
        self.mask_id = mask_id
        self.pad_id = pad_id
        self.eos_id = eos_id
        self.vocab_size = vocab_size
        self.forbidden_ids = frozenset(int(i) for i in forbidden_ids)
        self.max_seq_len = max_seq_len
        self._split = hasattr(model, "lm_head") and hasattr(getattr(model, "model", None), "forward") and not getattr(
            model, "_diffucode_remote", False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _source_positions(self, positions: torch.Tensor) -> torch.Tensor:
        return (positions - 1).clamp(min=0) if self.shift else positions

    @torch.inference_mode()
    def logits(self, ids: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) ids -> (B, T, V) logits, or (B, P, V) at `positions` (B, P); V may exceed `vocab_size`."""
        if ids.size(1) > self.max_seq_len:
            raise ConfigError(f"{ids.size(1)} tokens exceed the model's {self.max_seq_len}-token context")
        if self._split:
            hidden = self.model.model(input_ids=ids, is_causal=False, use_cache=False).last_hidden_state  # (B, T, H)
            return self._head(hidden, positions, ids)
        out = self.model(input_ids=ids).logits  # (B, T, V): remote code, full attention by construction
        if self.shift:
            out = torch.cat([out[:, :1], out[:, :-1]], dim=1)
        if positions is not None:
            out = out.gather(1, positions[..., None].expand(-1, -1, out.size(-1)))
        return out


    # -- approximate K/V caching (denoiser.CachedDenoiser), as for diffucode's own models ----------------
    @property
    def cacheable(self) -> bool:
        """Models run through transformers' own classes take a K/V cache; remote code is left alone."""
        return self._split

    @torch.no_grad()
    def prefill(self, ids: torch.Tensor, positions: torch.Tensor | None = None):
        """A full forward returning logits (as `logits`) and what `forward_cached` reuses: every layer's
        keys and values and the last hidden states."""
        if ids.size(1) > self.max_seq_len:
            raise ConfigError(f"{ids.size(1)} tokens exceed the model's {self.max_seq_len}-token context")
        full = transformers().DynamicCache()
        out = self.model.model(input_ids=ids, use_cache=True, **with_cache(self.model.model, full))
        cache = _KVCache(full, out.last_hidden_state)
        return self._head(out.last_hidden_state, positions, ids), cache

    @torch.no_grad()
    def forward_cached(self, ids: torch.Tensor, cache: "_KVCache", active: torch.Tensor,
                       positions: torch.Tensor | None = None) -> torch.Tensor:
        """Recompute only the `active` (B, A) positions (distinct within a row, as the sampler's are); the
        other positions' keys and values, and their hidden states, come from the last prefill. A shifted
        model (Dream) reads position i-1's hidden state for position i, so the first position of a hole
        keeps its prefill logits until the next refresh. Logits at `positions` (indices into `active` by
        rank), or at every active position."""
        active = active.expand(ids.size(0), -1)
        context = cache.context(active)
        try:
            out = self.model.model(input_ids=ids.gather(1, active), position_ids=active,
                                   **with_cache(self.model.model, context),
                                   use_cache=True)
        finally:
            context.crop(-active.size(1))  # drop the active rows it appended: the context stays as prefilled
        fresh = out.last_hidden_state
        hidden = cache.hidden.expand(ids.size(0), -1, -1)  # a one-row prefill serves every row
        hidden = hidden.scatter(1, active[..., None].expand(-1, -1, fresh.size(-1)), fresh)
        at = active if positions is None else active.gather(1, positions.expand(ids.size(0), -1))
        return self._head(hidden, at, ids)

    def _head(self, hidden: torch.Tensor, positions: torch.Tensor | None, ids: torch.Tensor) -> torch.Tensor:
        """Output projection at `positions` (B, P) (all when None), reading the shifted row for Dream."""
        if positions is None:
            positions = torch.arange(ids.size(1), device=ids.device).expand(ids.size(0), -1)
        src = self._source_positions(positions)
        return self.model.lm_head(hidden.gather(1, src[..., None].expand(-1, -1, hidden.size(-1))))


class _KVCache:
    """One prefill's keys/values and hidden states, and the context-only cache derived from them.

    Attention is bidirectional, so a query attends to a set of keys in any order: the context rows'
    keys (gathered once per set of active positions) followed by the active rows' fresh ones is the
    same attention as the full sequence's, stale only where the context attended to the hole."""

    def __init__(self, full, hidden: torch.Tensor):
        self.full = full  # transformers DynamicCache over all T positions
        self.hidden = hidden  # (B, T, H)
        self._active = None
        self._context = None

    def context(self, active: torch.Tensor):
        """The context-only cache for `active` (B, A); a one-row prefill's keys and values serve B rows."""
        if self._context is None or not torch.equal(self._active, active):
            tf = transformers()
            B, T = active.size(0), self.hidden.size(1)
            keep = torch.ones(B, T, dtype=torch.bool, device=active.device).scatter(1, active, False)
            idx = keep.nonzero()[:, 1].view(B, -1)  # (B, C) context positions, ascending
            layers = []
            for layer in self.full.layers:
                k, v = layer.keys, layer.values  # (1 or B, kv heads, T, head dim)
                k, v = k.expand(B, -1, -1, -1), v.expand(B, -1, -1, -1)
                g = idx[:, None, :, None].expand(-1, k.size(1), -1, k.size(3))
                layers.append((k.gather(2, g), v.gather(2, g)))
            self._context, self._active = tf.DynamicCache(ddp_cache_data=layers), active.clone()
        return self._context


def make_bidirectional(model) -> None:
    """Full attention for a transformers decoder: `config.is_causal = False` (masking_utils then builds a
    bidirectional mask, and `merge_with_config_defaults` passes is_causal=False to the attention kernels),
    plus every attention module's own flag, which flash-attention and SDPA's mask-less path read."""
    model.config.is_causal = False
    for sub in (getattr(model, "model", None), model):
        if sub is not None and hasattr(sub, "config"):
            sub.config.is_causal = False
    for module in model.modules():
        if hasattr(module, "is_causal"):
            module.is_causal = False


def json_file(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}
