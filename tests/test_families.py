"""Public checkpoint families (diffucode/families/): each family's conventions, proven on tiny random models.

Every model here is built in a temp folder in its family's published on-disk format (config.json,
safetensors names, tokenizer files with the family's special tokens) and loaded through `--model`,
exactly as a downloaded checkpoint would be. No network, no real weights.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

tf = pytest.importorskip("transformers")
pytest.importorskip("transformers.models.diffusion_gemma")

from safetensors.torch import save_file  # noqa: E402
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402

from diffucode import cli, families, infill  # noqa: E402
from diffucode.errors import CheckpointError, ConfigError  # noqa: E402
from diffucode.families import hf  # noqa: E402
from diffucode.loading import load_engine  # noqa: E402
from diffucode.testing import stdlib_sample_texts  # noqa: E402

SRC = "import os\n\ndef f(x):\n    y = x + 1\n    return y\n\nprint(f(2))\n"
HIDDEN, LAYERS, HEADS, FFN = 32, 2, 4, 64
OVERFLOW = 16  # head rows past the tokenizer's vocabulary, like Dream's 152,064 vs ~151,667


# -- building checkpoints in the families' formats --------------------------------------------------
@functools.cache
def _bpe() -> str:
    """A ~280-token byte-level BPE trained on a few stdlib modules (JSON, so each family gets a copy)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=280, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(stdlib_sample_texts(), trainer=trainer)
    return tok.to_str()


def write_bpe_tokenizer(folder: Path, specials: list[str], config: dict) -> int:
    """tokenizer.json + tokenizer_config.json with `specials` added after the BPE vocabulary (as in Qwen/LLaDA)."""
    tok = Tokenizer.from_str(_bpe())
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    tok.save(str(folder / "tokenizer.json"))
    added = {str(tok.token_to_id(t)): {"content": t, "special": True, "lstrip": False, "rstrip": False,
                                       "normalized": False, "single_word": False}
             for t in ["<|endoftext|>", *specials]}
    (folder / "tokenizer_config.json").write_text(json.dumps({"added_tokens_decoder": added, **config}))
    return tok.get_vocab_size()


def _dream_folder(folder: Path, *, seed: int = 0, copy: bool = False, mask_token_id: int | None = None,
                  dreamon: bool = False) -> Path:
    """A Dream/DiffuCoder-format folder: model_type "Dream", remote-code tokenizer class, Qwen2 weight names.

    copy=True builds a model whose output at position i is (the logits of) the token at position i:
    attention and MLP outputs are zeroed and the head equals the unit-norm embeddings. With Dream's
    shift, the *prediction* for position i must then be the token at i-1. Its overflow rows copy
    three times more strongly, so an unmasked argmax would land past the tokenizer's vocabulary.
    """
    folder.mkdir(parents=True, exist_ok=True)
    specials = (["<|im_start|>", "<|im_end|>", "<|mask|>", "<|dlm_pad|>"]
                + (["<|beginoftext|>", "<|expand|>"] if dreamon else []))
    n_tok = write_bpe_tokenizer(folder, specials, {
        "tokenizer_class": "DreamTokenizer", "auto_map": {"AutoTokenizer": ["tokenization_dream.DreamTokenizer", None]},
        "eos_token": "<|endoftext|>", "pad_token": "<|dlm_pad|>", "bos_token": "<|beginoftext|>" if dreamon else None,
        "chat_template": "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                         "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
    })
    mask = Tokenizer.from_file(str(folder / "tokenizer.json")).token_to_id("<|mask|>")
    config = {
        "model_type": "Dream", "architectures": ["DreamModel"],
        "auto_map": {"AutoConfig": "configuration_dream.DreamConfig", "AutoModel": "modeling_dream.DreamModel"},
        "vocab_size": n_tok + OVERFLOW, "hidden_size": HIDDEN, "intermediate_size": FFN, "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS, "num_key_value_heads": 2, "hidden_act": "silu", "max_position_embeddings": 512,
        "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "rope_scaling": None, "tie_word_embeddings": False,
        "use_sliding_window": False, "sliding_window": None, "attention_dropout": 0.0, "torch_dtype": "float32",
        "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0,
        "mask_token_id": mask if mask_token_id is None else mask_token_id, "transformers_version": "4.46.2",
    }
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0, "alg": "entropy", "steps": 512, "alg_temp": 0.0}))
    cfg = tf.Qwen2Config(**{k: v for k, v in config.items()
                            if k not in ("model_type", "architectures", "auto_map", "rope_scaling")})
    torch.manual_seed(seed)
    state = {k: v.contiguous() for k, v in tf.Qwen2ForCausalLM(cfg).state_dict().items()}
    if copy:
        emb = F.normalize(torch.randn(n_tok + OVERFLOW, HIDDEN), dim=-1) * math.sqrt(HIDDEN)
        emb[n_tok:] = 0.0
        head = emb.clone() / math.sqrt(HIDDEN)
        head[n_tok] = 3 * head[mask]  # after a mask, the raw argmax is the overflow id n_tok
        for j in range(1, OVERFLOW):
            head[n_tok + j] = 3 * head[j]
        state["model.embed_tokens.weight"], state["lm_head.weight"] = emb, head
        for k in state:
            if k.endswith(("o_proj.weight", "down_proj.weight")):
                state[k] = torch.zeros_like(state[k])
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


LLADA_SPECIALS = ["<|startoftext|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|mdm_mask|>"]


def _llada_config(n_tok: int, **over) -> dict:
    return {
        "model_type": "llada", "architectures": ["LLaDAModelLM"],
        "auto_map": {"AutoConfig": "configuration_llada.LLaDAConfig", "AutoModel": "modeling_llada.LLaDAModelLM"},
        "d_model": HIDDEN, "n_heads": HEADS, "n_kv_heads": HEADS, "n_layers": LAYERS, "mlp_hidden_size": FFN,
        "mlp_ratio": 4, "vocab_size": n_tok, "embedding_size": n_tok, "max_sequence_length": 512,
        "rope_theta": 500000.0, "rms_norm_eps": 1e-5, "weight_tying": False, "block_type": "llama",
        "activation_type": "silu", "layer_norm_type": "rms", "alibi": False, "rope": True, "include_bias": False,
        "include_qkv_bias": False, "attention_layer_norm": False, "input_emb_norm": False, "scale_logits": False,
        "block_group_size": 1, "eos_token_id": 0, "pad_token_id": 0, "use_cache": False, **over,
    }


def _llada_folder(folder: Path, *, seed: int = 0, copy: bool = False, **config_over) -> tuple[Path, dict]:
    """A LLaDA-format folder: OLMo-style tensor names under model.transformer.*, `<|mdm_mask|>` in the tokenizer."""
    folder.mkdir(parents=True, exist_ok=True)
    n_tok = write_bpe_tokenizer(folder, LLADA_SPECIALS, {"tokenizer_class": "PreTrainedTokenizerFast",
                                                      "eos_token": "<|endoftext|>", "bos_token": "<|startoftext|>"})
    (folder / "config.json").write_text(json.dumps(_llada_config(n_tok, **config_over)))
    g = torch.Generator().manual_seed(seed)

    def w(*shape, scale=0.2):
        return torch.randn(*shape, generator=g) * scale

    sd = {"model.transformer.wte.weight": w(n_tok, HIDDEN, scale=0.5),
          "model.transformer.ln_f.weight": 1 + w(HIDDEN, scale=0.1),
          "model.transformer.ff_out.weight": w(n_tok, HIDDEN)}
    for i in range(LAYERS):
        p = f"model.transformer.blocks.{i}."
        for name, shape in [("q_proj", (HIDDEN, HIDDEN)), ("k_proj", (HIDDEN, HIDDEN)), ("v_proj", (HIDDEN, HIDDEN)),
                            ("attn_out", (HIDDEN, HIDDEN)), ("ff_proj", (FFN, HIDDEN)), ("up_proj", (FFN, HIDDEN)),
                            ("ff_out", (HIDDEN, FFN))]:
            sd[p + name + ".weight"] = w(*shape)
        sd[p + "attn_norm.weight"] = 1 + w(HIDDEN, scale=0.1)
        sd[p + "ff_norm.weight"] = 1 + w(HIDDEN, scale=0.1)
    if copy:
        emb = F.normalize(w(n_tok, HIDDEN), dim=-1) * math.sqrt(HIDDEN)
        sd["model.transformer.wte.weight"], sd["model.transformer.ff_out.weight"] = emb, emb / math.sqrt(HIDDEN)
        sd["model.transformer.ln_f.weight"] = torch.ones(HIDDEN)
        for i in range(LAYERS):
            for name in ("attn_out", "ff_out"):
                sd[f"model.transformer.blocks.{i}.{name}.weight"].zero_()
    save_file(sd, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder, sd


def _llada_reference(sd: dict, ids: torch.Tensor) -> torch.Tensor:
    """LLaDA's llama block written out from its modeling_llada.py semantics (OLMo names), full attention."""
    hd = HIDDEN // HEADS
    B, T = ids.shape
    rms = lambda x, wt: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * wt  # noqa: E731
    inv = 1.0 / (500000.0 ** (torch.arange(0, hd, 2).float() / hd))
    ang = torch.outer(torch.arange(T).float(), inv)
    sin, cos = torch.cat([ang, ang], -1).sin(), torch.cat([ang, ang], -1).cos()

    def rope(t):
        a, b = t[..., : hd // 2], t[..., hd // 2:]
        return t * cos + torch.cat([-b, a], -1) * sin

    x = sd["model.transformer.wte.weight"][ids]
    for i in range(LAYERS):
        p = f"model.transformer.blocks.{i}."
        h = rms(x, sd[p + "attn_norm.weight"])
        q, k, v = ((h @ sd[p + f"{n}_proj.weight"].T).view(B, T, HEADS, hd).transpose(1, 2) for n in "qkv")
        att = F.scaled_dot_product_attention(rope(q), rope(k), v, is_causal=False).transpose(1, 2).reshape(B, T, HIDDEN)
        x = x + att @ sd[p + "attn_out.weight"].T
        h = rms(x, sd[p + "ff_norm.weight"])
        x = x + (F.silu(h @ sd[p + "ff_proj.weight"].T) * (h @ sd[p + "up_proj.weight"].T)) @ sd[p + "ff_out.weight"].T
    return rms(x, sd["model.transformer.ln_f.weight"]) @ sd["model.transformer.ff_out.weight"].T


def _gemma_folder(folder: Path, seed: int = 0) -> Path:
    """A DiffusionGemma folder written by transformers' own save_pretrained (its published format)."""
    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer.from_str(_bpe())
    specials = ["<pad>", "<eos>", "<bos>", "<|image>", "<image|>", "<|image|>"]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    n_tok = tok.get_vocab_size()
    tok.save(str(folder / "tokenizer.json"))
    ids = {t: tok.token_to_id(t) for t in specials}
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "pad_token": "<pad>", "eos_token": "<eos>",
        "bos_token": "<bos>"}))
    cfg = tf.DiffusionGemmaConfig(
        text_config=dict(vocab_size=n_tok, hidden_size=HIDDEN, intermediate_size=FFN, num_hidden_layers=LAYERS,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=16, global_head_dim=16,
                         max_position_embeddings=512, sliding_window=16,
                         layer_types=["sliding_attention", "full_attention"],
                         pad_token_id=ids["<pad>"], eos_token_id=ids["<eos>"], bos_token_id=ids["<bos>"],
                         num_experts=2, top_k_experts=1, moe_intermediate_size=16),
        vision_config=dict(model_type="gemma4_vision", hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                           num_attention_heads=2, num_key_value_heads=2, head_dim=8, position_embedding_size=64),
        canvas_length=8, boi_token_id=ids["<|image>"], eoi_token_id=ids["<image|>"], image_token_id=ids["<|image|>"])
    torch.manual_seed(seed)
    with hf.quiet():
        tf.DiffusionGemmaForBlockDiffusion(cfg).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: intra-op threads only add overhead (and stall badly on a busy 2-core machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def dream_dir(tmp_path_factory) -> Path:
    return _dream_folder(tmp_path_factory.mktemp("dream") / "DiffuCoder-7B-Instruct")


@pytest.fixture(scope="module")
def dream_engine(dream_dir):
    return load_engine(dream_dir)


@pytest.fixture(scope="module")
def dream_copy_engine(tmp_path_factory):
    return load_engine(_dream_folder(tmp_path_factory.mktemp("dreamcopy") / "m", copy=True))


@pytest.fixture(scope="module")
def llada(tmp_path_factory):
    folder, sd = _llada_folder(tmp_path_factory.mktemp("llada") / "LLaDA-8B-Instruct")
    return folder, sd, load_engine(folder)


@pytest.fixture(scope="module")
def gemma(tmp_path_factory):
    folder = _gemma_folder(tmp_path_factory.mktemp("gemma") / "diffusiongemma-tiny")
    with pytest.MonkeyPatch.context() as mp:
        # generate() calls torch.compiler.cudagraph_mark_step_begin() every step, a CUDA-graph marker that
        # imports torch._inductor (~10 s on a 2-core CPU) and does nothing else here: skip it in tests.
        mp.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: None)
        yield folder, load_engine(folder)


def _ids(engine, n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 250, (1, n), generator=g)  # plain BPE ids (no specials)


# -- detection, presets ----------------------------------------------------------------------------
def test_detect_family_from_config_and_override():
    assert families.detect_family({"model_type": "Dream", "architectures": ["DreamModel"]}) == "dream"
    assert families.detect_family({"model_type": "llada"}) == "llada"
    assert families.detect_family({"architectures": ["LLaDAModelLM"]}) == "llada"
    assert families.detect_family({"model_type": "diffusion_gemma"}) == "diffusion_gemma"
    assert families.detect_family({"model_type": "qwen2"}, "DiffuCoder") == "dream"
    # a plain Qwen2 folder is taken for Open-dCoder, whose loader refuses one without its mask token
    assert families.detect_family({"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"]}) == "open_dcoder"
    assert families.detect_family({"model_type": "CoDA"}) == "coda"
    assert families.detect_family({"architectures": ["SDARForCausalLM"]}) == "sdar"
    a2d = {"model_type": "a2d-qwen3", "architectures": ["A2DQwen3LMHeadModel"]}
    assert families.detect_family(a2d, name="dllm-hub/Qwen3-0.6B-diffusion-mdlm-v0.1") == "a2d"
    assert families.detect_family(a2d, name="dllm-hub/Qwen3-0.6B-diffusion-bd3lm-v0.1") == "a2d_bd3lm"
    assert families.detect_family(a2d, "bd3lm", name="/models/mine") == "a2d_bd3lm"
    with pytest.raises(CheckpointError, match="--family"):
        families.detect_family({"model_type": "llama", "architectures": ["LlamaForCausalLM"]})
    with pytest.raises(ConfigError, match="unknown model family"):
        families.detect_family({}, "gpt2")


def test_presets_are_valid_infill_settings():
    for name, fields in families.FAMILY_PRESETS.items():
        infill.InfillSettings(**fields).check()
    assert families.FAMILY_PRESETS["diffucoder-instruct"]["strategy"] == "entropy"
    assert families.preset_settings("llada-instruct", steps=None, temperature=0.5)["temperature"] == 0.5
    assert families.default_preset("dream", "apple/DiffuCoder-7B-Instruct") == "diffucoder-instruct"
    assert families.default_preset("dream", "Dream-org/Dream-Coder-v0-Instruct-7B") == "dream-coder"
    assert families.default_preset("llada", "GSAI-ML/LLaDA-8B-Base") == "llada"


# -- Dream family -----------------------------------------------------------------------------------
def test_dream_loads_without_remote_code(dream_engine, dream_dir):
    den, tok = dream_engine.denoiser, dream_engine.tokenizer
    assert dream_engine.meta["family"] == "dream" and dream_engine.meta["preset"] == "diffucoder-instruct"
    assert isinstance(den.model, tf.Qwen2ForCausalLM)
    assert den.mask_id == tok.token_id("<|mask|>")
    assert den.pad_id == tok.token_id("<|dlm_pad|>") and den.eos_id == tok.token_id("<|endoftext|>")
    head_rows = json.loads((dream_dir / "config.json").read_text())["vocab_size"]
    assert den.vocab_size == tok.vocab_size == head_rows - OVERFLOW
    assert {den.mask_id, tok.token_id("<|im_start|>")} <= den.forbidden_ids and den.eos_id not in den.forbidden_ids
    assert not (dream_dir / "modeling_dream.py").exists()  # nothing to run: transformers' Qwen2 classes only


def test_dream_mask_id_comes_from_the_tokenizer_not_the_config(tmp_path):
    eng = load_engine(_dream_folder(tmp_path / "m", mask_token_id=7))
    assert eng.denoiser.mask_id == eng.tokenizer.token_id("<|mask|>") != 7


def test_dream_attention_is_full(dream_engine):
    """Changing a later token changes an earlier position's logits (a causal model would not)."""
    den = dream_engine.denoiser
    ids = _ids(dream_engine)
    other = ids.clone()
    other[0, 9] = (other[0, 9] + 1) % 250
    a, b = den.logits(ids), den.logits(other)
    assert not torch.allclose(a[0, 3], b[0, 3])
    # control: the same weights run causally (transformers' default) do not see the later token
    causal = tf.Qwen2ForCausalLM(den.model.config.__class__(**{**den.model.config.to_dict(), "is_causal": True}))
    causal.load_state_dict(den.model.state_dict())
    causal.config.is_causal = True
    with torch.no_grad():
        ca, cb = causal(ids).logits, causal(other).logits
    assert torch.allclose(ca[0, 3], cb[0, 3])


def test_dream_logits_are_shifted_by_one(dream_copy_engine):
    """The copy model outputs token i at position i; with Dream's shift, position i predicts token i-1."""
    den = dream_copy_engine.denoiser
    ids = _ids(dream_copy_engine, 16, seed=1)
    pred = den.logits(ids)[..., : den.vocab_size].argmax(-1)[0]  # (the overflow rows are tested below)
    assert pred[0] == ids[0, 0]  # position 0 has no left neighbour: it keeps its own output
    assert torch.equal(pred[1:], ids[0, :-1])  # fails without the shift (pred == ids) or shifted the wrong way


def test_dream_logits_match_an_explicit_bidirectional_forward(dream_engine):
    """Against transformers' Qwen2 with an explicit all-True 4D mask (a second way to be bidirectional)."""
    den = dream_engine.denoiser
    ids = _ids(dream_engine, 10, seed=2)
    with torch.no_grad():
        raw = den.model(ids, attention_mask=torch.ones(1, 1, 10, 10, dtype=torch.bool)).logits
    want = torch.cat([raw[:, :1], raw[:, :-1]], 1)
    assert torch.allclose(den.logits(ids), want, atol=1e-5)
    pos = torch.tensor([[0, 4, 9]])
    assert torch.allclose(den.logits(ids, pos), want[:, [0, 4, 9]], atol=1e-5)


def test_dream_logits_past_the_vocabulary_are_never_sampled(dream_copy_engine):
    """The head is wider than the tokenizer; the overflow row wins the raw argmax, never a sample."""
    from diffucode.sampler import sample

    den = dream_copy_engine.denoiser
    ids = torch.cat([_ids(dream_copy_engine, 6), torch.full((1, 6), den.mask_id)], 1)
    raw = den.logits(ids).argmax(-1)[0, 7:]
    assert (raw >= den.vocab_size).all()  # precondition: unmasked, every masked slot would pick an overflow id
    out = sample(den, ids.repeat(2, 1), steps=3, temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert (out.ids < den.vocab_size).all()
    dream_copy_engine.tokenizer.decode(out.ids[0].tolist())  # decodes without error


def test_dream_full_infill_and_cli(dream_engine, dream_dir, tmp_path, capsysbinary):
    res = infill.infill(dream_engine, SRC, [(SRC.index("    y"), SRC.index("    return"))],
                        infill.InfillSettings(steps=2, max_new_tokens=6, validate=False))
    assert res.candidates and res.forwards >= 1
    _cli_keeps_outside_lines(dream_dir, tmp_path, capsysbinary)


def test_dream_chat_template_and_tokenizer_round_trip(dream_engine, llada, tiny_engine):
    prompt = families.instruction_prompt(dream_engine, "Rename x to n.", "def f(x):\n    return x\n")
    assert prompt.startswith("<|im_start|>user\nRename x to n.") and prompt.endswith("<|im_start|>assistant\n")
    with pytest.raises(ConfigError, match="--instruction"):
        families.instruction_prompt(llada[2], "Rename x.")  # its tokenizer has no chat template
    with pytest.raises(ConfigError, match="--instruction"):
        families.instruction_prompt(tiny_engine, "Rename x.")  # diffucode's own model
    tok = dream_engine.tokenizer
    text = "def f(x):\r\n\treturn '名前 🎉'  # é\n"
    assert tok.decode(tok.encode(text)) == text
    assert tok.decode([*tok.encode("a"), dream_engine.denoiser.mask_id, tok.token_id("<|dlm_pad|>"), 10**6]) == "a"


def test_memory_estimate_refuses_what_cannot_fit(dream_dir, monkeypatch):
    need = hf.estimate_bytes(dream_dir, torch.float32)
    n_params = sum(p.numel() for p in load_engine(dream_dir).denoiser.model.parameters())
    assert need == 4 * n_params and hf.estimate_bytes(dream_dir, torch.bfloat16) == need // 2
    monkeypatch.setattr(hf.os, "sysconf", lambda name: 1024 if name == "SC_PAGE_SIZE" else 10)
    with pytest.raises(CheckpointError, match="GiB"):
        load_engine(dream_dir)


# -- LLaDA ------------------------------------------------------------------------------------------
def test_llada_weights_map_onto_llama_exactly(llada):
    """Logits equal a from-scratch implementation of LLaDA's block over the OLMo-named tensors."""
    folder, sd, eng = llada
    assert isinstance(eng.denoiser.model, tf.LlamaForCausalLM) and eng.meta["family"] == "llada"
    ids = _ids(eng, 12, seed=3)
    assert torch.allclose(eng.denoiser.logits(ids), _llada_reference(sd, ids), atol=1e-5)  # full attention, no shift


def test_llada_mask_id_from_tokenizer(llada):
    _, _, eng = llada
    den, tok = eng.denoiser, eng.tokenizer
    assert den.mask_id == tok.token_id("<|mdm_mask|>") and den.eos_id == tok.token_id("<|endoftext|>")
    assert tok.token_id("<|eot_id|>") in den.forbidden_ids and den.vocab_size == tok.vocab_size


def test_llada_has_no_logit_shift(tmp_path):
    folder, _ = _llada_folder(tmp_path / "copy", copy=True)
    eng = load_engine(folder)
    ids = _ids(eng, 16, seed=4)
    assert torch.equal(eng.denoiser.logits(ids).argmax(-1), ids)


def test_llada_variants_that_do_not_map_ask_for_remote_code(tmp_path):
    folder, _ = _llada_folder(tmp_path / "alibi", alibi=True, rope=False)
    with pytest.raises(CheckpointError, match="--trust-remote-code"):
        load_engine(folder)


def test_llada_full_infill_and_cli(llada, tmp_path, capsysbinary):
    folder, _, eng = llada
    res = infill.infill(eng, SRC, [(SRC.index("    y"), SRC.index("    return"))],
                        infill.InfillSettings(steps=2, max_new_tokens=6, validate=False, block_length=2))
    assert res.candidates
    _cli_keeps_outside_lines(folder, tmp_path, capsysbinary)


# -- DiffusionGemma ---------------------------------------------------------------------------------
def test_gemma_continuation_is_transformers_generate(gemma):
    folder, eng = gemma
    den = eng.denoiser
    assert eng.meta["family"] == "diffusion_gemma" and isinstance(den.model, tf.DiffusionGemmaForBlockDiffusion)
    prompt = [den.bos_id, *eng.tokenizer.encode("def add(a, b):\n")]
    got = den.continuation(prompt, max_new_tokens=16, settings=infill.InfillSettings(steps=4), seed=3)
    torch.manual_seed(3)
    with torch.no_grad():
        seq = den.model.generate(torch.tensor([prompt]), max_new_tokens=16, max_denoising_steps=4).sequences[0]
    want = seq[len(prompt):len(prompt) + 16].tolist()
    stops = {*den.eos_ids, den.pad_id}
    want = want[: next((i for i, t in enumerate(want) if t in stops), len(want))]
    assert got == want


def test_gemma_complete_maps_and_infill_rewrite_refuse(gemma, tmp_path, capsysbinary):
    folder, eng = gemma
    cursor = SRC.index("    return") + 4
    assert eng.complete is not None  # declared by the family
    res = infill.complete(eng, SRC, cursor,
                          infill.InfillSettings(steps=2, max_new_tokens=8, validate=False, candidates=2))
    assert res.candidates and res.forwards >= 1
    edit = res.candidates[0].edits[0]
    out = res.candidates[0].apply(SRC)
    assert out[: edit.start] == SRC[: edit.start] and out.endswith(SRC[edit.end:])
    with pytest.raises(ConfigError, match="infill and rewrite do not apply"):
        infill.infill(eng, SRC, [(20, 30)], infill.InfillSettings(steps=2, validate=False))
    with pytest.raises(ConfigError, match="infill and rewrite do not apply"):
        infill.rewrite(eng, SRC, (20, 30), infill.InfillSettings(steps=2, validate=False))
    p = tmp_path / "a.py"
    p.write_text(SRC)
    code = cli.main(["infill", f"{p}:2-3", "--model", str(folder), "--no-validate", "--steps", "2"])
    _, err = capsysbinary.readouterr()
    assert code == 2 and "use `diffucode complete`" in err.decode() and p.read_text() == SRC


# -- DreamOn: expand/delete ------------------------------------------------------------------------------
def test_dreamon_expand_and_delete_tokens_drive_auto_length(tmp_path, dream_engine):
    eng = load_engine(_dream_folder(tmp_path / "DreamOn-v0-7B", dreamon=True))
    den, tok = eng.denoiser, eng.tokenizer
    assert den.expand_id == tok.token_id("<|expand|>") and den.delete_id == den.eos_id == tok.token_id("<|endoftext|>")
    assert eng.meta["variable_length"] == "expand/delete"
    assert dream_engine.denoiser.expand_id is None and dream_engine.meta["variable_length"] is None
    span = (SRC.index("    y"), SRC.index("    return"))
    res = infill.infill(eng, SRC, [span], infill.InfillSettings(validate=False, max_new_tokens=12))
    assert res.hole_tokens == (max(4, len(tok.encode(SRC[span[0]:span[1]]))),)  # started there, then grew/shrank
    assert res.candidates and all(den.mask_id not in tok.encode(c.edits[0].text) for c in res.candidates)
    # the fixed-length modes never sample <|expand|> (it is a control token)
    fixed = infill.infill(eng, SRC, [span], infill.InfillSettings(validate=False, length=6, steps=3))
    assert "<|expand|>" not in fixed.candidates[0].edits[0].text


def test_dreamon_prompt_is_bos_prefix_hole_suffix_eos(tmp_path):
    """DreamOn's generator feeds [BOS] prefix <masks> suffix [EOS]; guidance masks all of that but the hole."""
    from diffucode.engine import Engine

    eng = load_engine(_dream_folder(tmp_path / "DreamOn-v0-7B", dreamon=True))
    tok = eng.tokenizer
    bos, eos = tok.token_id("<|beginoftext|>"), tok.token_id("<|endoftext|>")
    assert eng.denoiser.infill_frame == ((bos,), (eos,))
    span = (SRC.index("    y"), SRC.index("    return"))
    prefix, suffix = tok.encode(SRC[: span[0]]), tok.encode(SRC[span[1]:])
    old = len(tok.encode(SRC[span[0]:span[1]]))
    rec = _Recorder(eng.denoiser)
    res = infill.infill(Engine(rec, tok, name="dreamon", meta=eng.meta), SRC, [span],
                        infill.InfillSettings(validate=False, max_new_tokens=12))
    assert res.candidates
    first = rec.calls[0][0].tolist()
    assert first == [bos, *prefix, *[eng.denoiser.mask_id] * max(4, old), *suffix, eos]
    rec.calls.clear()
    infill.infill(Engine(rec, tok, name="dreamon", meta=eng.meta), SRC, [span],
                  infill.InfillSettings(validate=False, max_new_tokens=12, cfg_scale=1.0))
    cond, un = rec.calls[0]
    assert cond.tolist() == first
    hole = slice(1 + len(prefix), len(first) - len(suffix) - 1)
    assert (un[hole] == cond[hole]).all() and (un[: hole.start] == eng.denoiser.mask_id).all()
    assert (un[hole.stop:] == eng.denoiser.mask_id).all()  # BOS and EOS are part of the prompt guidance masks
    # the fixed-length and search modes frame the context the same way (the model was trained on it)
    for settings in (dict(length_mode="fixed", length=5, steps=5),
                     dict(length_mode="search", search_lengths=(3,), steps=3)):
        rec.calls.clear()
        infill.infill(Engine(rec, tok, name="dreamon", meta=eng.meta), SRC, [span],
                      infill.InfillSettings(validate=False, max_new_tokens=12, **settings))
        n = settings.get("length") or settings["search_lengths"][0]
        assert rec.calls[0][0].tolist() == [bos, *prefix, *[eng.denoiser.mask_id] * n, *suffix, eos]
    # a context cut to fit keeps the frame inside the budget
    tight = infill.InfillSettings(validate=False, length_mode="fixed", length=4, steps=2, context_tokens=12)
    rec.calls.clear()
    infill.infill(Engine(rec, tok, name="dreamon", meta=eng.meta), SRC, [span], tight)
    ids = rec.calls[0][0].tolist()
    assert len(ids) <= 12 and ids[0] == bos and ids[-1] == eos
    # models without the expand tokens keep the plain layout
    assert load_engine(_dream_folder(tmp_path / "plain")).denoiser.infill_frame == ((), ())


# -- classifier-free guidance (LLaDA's cfg_scale) ----------------------------------------------------------
class _Recorder:
    """Passes every call to `den`, keeping the ids it was given."""

    cacheable = False

    def __init__(self, den):
        self._den, self.calls = den, []

    def __getattr__(self, name):
        return getattr(self._den, name)

    def logits(self, ids, positions=None):
        self.calls.append(ids.clone())
        return self._den.logits(ids, positions)


class _CacheRecorder(_Recorder):
    """Records the inputs of the K/V-cache entry points (prefill: a refresh; forward_cached: a cached step)."""

    cacheable = True

    def __init__(self, den):
        super().__init__(den)
        self.prefills, self.cached = [], []

    def prefill(self, ids, **kwargs):
        self.prefills.append(ids.clone())
        return self._den.prefill(ids, **kwargs)

    def forward_cached(self, ids, cache, positions):
        self.cached.append(ids.clone())
        return self._den.forward_cached(ids, cache, positions)


def test_cfg_logits_are_llada_formula_over_two_forwards(llada):
    from diffucode.guidance import guided_logits
    from diffucode.sampler import sample

    _, _, eng = llada
    den = eng.denoiser
    ids = _ids(eng, 14, seed=5).repeat(2, 1)
    ids[:, 6:11] = den.mask_id
    ids[1, 8] = 7  # a committed token in the hole stays in the unconditional input
    prompt = torch.zeros(14, dtype=torch.bool)
    prompt[:6] = prompt[11:] = True
    pos = torch.arange(6, 11)[None].expand(2, -1)
    cond = den.logits(ids, pos)
    uncond_ids = ids.clone()
    uncond_ids[:, prompt] = den.mask_id
    un = den.logits(uncond_ids, pos)
    for scale in (0.5, 2.0):
        want = un + (scale + 1) * (cond - un)
        assert torch.allclose(guided_logits(den, ids, pos, prompt=prompt, cfg_scale=scale), want, atol=1e-4)
    assert torch.equal(guided_logits(den, ids, pos, prompt=prompt, cfg_scale=0.0), den.logits(ids, pos))

    # The sampler's first commit (one token per forward) is the argmax of the guided distribution, and
    # here that differs from the plain model's, so the check fails if guidance is skipped.
    start = ids[:1].clone()
    start[0, 8] = den.mask_id

    def first_choice(scale):
        g = guided_logits(den, start, pos[:1], prompt=prompt, cfg_scale=scale)[..., : den.vocab_size].clone()
        g[..., sorted(i for i in den.forbidden_ids if i < den.vocab_size)] = float("-inf")  # never sampled
        conf, tok = torch.softmax(g, -1).max(-1)
        j = int(conf[0].argmax())
        return 6 + j, int(tok[0, j])

    def first_commit(scale):
        seen = []

        def on_step(forwards, cur, still):
            if forwards == 1:
                new = ((start[0] == den.mask_id) & ~still[0]).nonzero().flatten().tolist()
                seen.extend((p, int(cur[0, p])) for p in new)

        sample(den, start, steps=5, cfg_scale=scale, callback=on_step)
        return seen

    guided, plain = first_choice(2.0), first_choice(0.0)
    assert guided != plain  # this seed and scale tell the two apart
    assert first_commit(2.0) == [guided] and first_commit(0.0) == [plain]


def test_cfg_through_infill_and_instruct_masks_the_context(llada, dream_engine):
    from diffucode.instruct import instruct
    from diffucode.engine import Engine

    _, _, eng = llada
    span = (SRC.index("    y"), SRC.index("    return"))
    fixed = dict(validate=False, length_mode="fixed", length=5, steps=5, candidates=2, temperature=0.5, seed=3)
    base = infill.infill(eng, SRC, [span], infill.InfillSettings(**fixed))
    zero = infill.infill(eng, SRC, [span], infill.InfillSettings(**fixed, cfg_scale=0.0))
    assert [c.edits for c in zero.candidates] == [c.edits for c in base.candidates]  # 0: bit-identical, off

    rec = _Recorder(eng.denoiser)
    infill.infill(Engine(rec, eng.tokenizer, name="rec", meta=eng.meta), SRC, [span],
                  infill.InfillSettings(**fixed, cfg_scale=1.0))
    first = rec.calls[0]
    assert first.shape[0] == 4  # two candidates and their unconditional copies, one forward
    hole = first[0] == eng.denoiser.mask_id
    assert int(hole.sum()) == 5 and (first[2:, ~hole] == eng.denoiser.mask_id).all()
    assert torch.equal(first[2:, hole], first[:2, hole])
    # the K/V cache takes both halves: refreshing every step is the uncached decoder
    exact = infill.infill(eng, SRC, [span], infill.InfillSettings(**fixed, cfg_scale=1.0, cache_refresh=None))
    cached = infill.infill(eng, SRC, [span], infill.InfillSettings(**fixed, cfg_scale=1.0, cache_refresh=1))
    assert [c.edits for c in cached.candidates] == [c.edits for c in exact.candidates]
    # Between refreshes the cached steps run on both halves too: the unconditional rows keep their own
    # (masked-context) cache, so the context stays masked in every cached step.
    steps = _CacheRecorder(eng.denoiser)
    infill.infill(Engine(steps, eng.tokenizer, name="rec", meta=eng.meta), SRC, [span],
                  infill.InfillSettings(**fixed, cfg_scale=1.0, cache_refresh=4))
    assert len(steps.prefills) == 2 and len(steps.cached) == 3  # 5 steps: refresh, 3 cached, refresh
    for ids in steps.prefills + steps.cached:
        assert ids.shape[0] == 4 and (ids[2:, ~hole] == eng.denoiser.mask_id).all()
        assert torch.equal(ids[2:, hole], ids[:2, hole])

    rec = _Recorder(dream_engine.denoiser)
    chat = Engine(rec, dream_engine.tokenizer, name="chat", meta=dream_engine.meta)
    instruct(chat, SRC, (0, 10), "Rename x.", infill.InfillSettings(max_new_tokens=8, steps=2, cfg_scale=1.0))
    cond, un = rec.calls[0]
    prompt = dream_engine.tokenizer.encode(families.instruction_prompt(chat, "Rename x.", SRC[:10]))
    P = len(prompt)
    assert cond[:P].tolist() == prompt and (un[:P] == dream_engine.denoiser.mask_id).all()
    assert torch.equal(un[P:], cond[P:])  # the answer (all masks at first) is the same in both


def test_bad_guidance_and_position_temperature_settings():
    for bad in (dict(cfg_scale=-1.0), dict(cfg_scale=float("inf")), dict(position_temperature=-0.1),
                dict(position_temperature=float("nan"))):
        with pytest.raises(ConfigError):
            infill.InfillSettings(**bad).check()


# -- instructions (chat templates) ---------------------------------------------------------------------
class _Answer:
    """Wraps a chat model's denoiser: answers `text` in the masked answer, then <|im_end|>."""

    cacheable = False  # scripted logits: the wrapped model's K/V cache would bypass them

    def __init__(self, den, tok, text: str):
        self._den, self.script, self.end = den, tok.encode(text), tok.token_id("<|im_end|>")
        self.prompts = []

    def __getattr__(self, name):
        return getattr(self._den, name)

    def logits(self, ids, positions):
        start = int((ids[0] == self.mask_id).nonzero()[0]) if not self.prompts else self.prompts[0]
        self.prompts.append(start)
        out = torch.zeros(*positions.shape, self._den.vocab_size + OVERFLOW)
        for b in range(positions.size(0)):
            for j, p in enumerate(positions[b].tolist()):
                k = p - start
                out[b, j, self.script[k] if k < len(self.script) else self.end] = 20.0 - 0.01 * k
        return out


def test_instruction_rewrite_uses_the_chat_template_and_takes_the_fenced_code(dream_engine):
    from diffucode.instruct import answer_code, instruct
    from diffucode.engine import Engine

    src = "import os\n\ndef f(x):\n    return x\n\nprint(f(2))\n"
    span = (src.index("def"), src.index("\nprint") + 1)
    reply = "Here it is:\n```python\ndef f(n: int) -> int:\n    return n\n```\nDone."
    den = _Answer(dream_engine.denoiser, dream_engine.tokenizer, reply)
    eng = Engine(den, dream_engine.tokenizer, name="chat", meta=dream_engine.meta)
    res = instruct(eng, src, span, "Rename x to n and add type hints.",
                   infill.InfillSettings(max_new_tokens=len(den.script) + 6, steps=4))
    assert res.best is not None and res.best.valid
    assert res.best.apply(src) == "import os\n\ndef f(n: int) -> int:\n    return n\n\nprint(f(2))\n"
    prompt = dream_engine.tokenizer.decode(  # what the model saw before the answer (control tokens dropped)
        dream_engine.tokenizer.encode(families.instruction_prompt(eng, "Rename x to n and add type hints.",
                                                                  src[span[0]:span[1]])))
    assert "Rename x to n" in prompt and "def f(x):" in prompt
    assert res.best.n_tokens == len(den.script)  # stopped at <|im_end|> though it is a control token
    assert answer_code("plain\ncode\n") == "plain\ncode" and answer_code("```\na\n") == "a"


def test_instruction_rewrite_cli(dream_dir, llada, tiny_model_dir, tmp_path, capsysbinary):
    p = tmp_path / "a.py"
    p.write_text(SRC)
    code = cli.main(["rewrite", f"{p}:3-5", "--model", str(dream_dir), "--instruction", "Make it shorter.",
                     "--no-validate", "--steps", "3", "--max-new-tokens", "8", "--quiet"])
    out, err = capsysbinary.readouterr()
    assert code == 0, err.decode()
    lines = SRC.splitlines(keepends=True)
    assert out.decode().startswith("".join(lines[:2])) and out.decode().endswith("".join(lines[5:]))
    for model in (llada[0], tiny_model_dir):  # no chat template: a clear refusal, file untouched
        code = cli.main(["rewrite", f"{p}:3-5", "--model", str(model), "--instruction", "Make it shorter."])
        _, err = capsysbinary.readouterr()
        assert code == 2 and "need an instruct checkpoint" in err.decode()
    code = cli.main(["rewrite", f"{p}:3-5", "--instruction", " ", "--model", str(dream_dir)])
    assert code == 2 and "instruction is empty" in capsysbinary.readouterr()[1].decode()
    assert p.read_text() == SRC


# -- shared --------------------------------------------------------------------------------------------
def _cli_keeps_outside_lines(folder: Path, tmp_path: Path, capsysbinary) -> None:
    p = tmp_path / "a.py"
    p.write_text(SRC)
    code = cli.main(["infill", f"{p}:2-3", "--model", str(folder), "--no-validate", "--steps", "2",
                     "--max-new-tokens", "6", "--quiet"])
    out, err = capsysbinary.readouterr()
    assert code in (0, 1), err.decode()
    assert p.read_text() == SRC
    if code == 0:
        lines, new = SRC.splitlines(keepends=True), out.decode()
        assert new.startswith(lines[0]) and new.endswith("".join(lines[3:]))


def test_unknown_model_type_and_missing_weights_are_clear(tmp_path):
    (tmp_path / "gpt").mkdir()
    (tmp_path / "gpt" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(CheckpointError, match="not a known masked-diffusion family"):
        load_engine(tmp_path / "gpt")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "config.json").write_text(json.dumps({"model_type": "Dream"}))
    with pytest.raises(CheckpointError, match="safetensors"):
        load_engine(tmp_path / "d")


def test_dtype_and_device_defaults():
    assert hf.pick_dtype(torch.device("cpu"), None) == torch.float32
    assert hf.pick_dtype(torch.device("cpu"), "bf16") == torch.bfloat16
    from diffucode.devices import resolve_device

    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert resolve_device("auto").type in ("cpu", "mps")
    for bad in ("bogus", "cuda:99"):
        with pytest.raises(ConfigError, match="device"):
            resolve_device(bad)
    with pytest.raises(ConfigError):
        hf.pick_dtype(torch.device("cpu"), "int3")


def test_models_lists_cached_hub_checkpoints_of_known_families(tmp_path):
    """A Hugging Face cache laid out as huggingface_hub writes it (blobs + symlinked snapshots)."""
    for repo, cfg in [("apple/DiffuCoder-7B-Instruct", {"model_type": "Dream", "hidden_size": 3584}),
                      ("GSAI-ML/LLaDA-8B-Base", {"model_type": "llada", "d_model": 4096}),
                      ("gpt2", {"model_type": "gpt2"})]:
        root = tmp_path / ("models--" + repo.replace("/", "--"))
        (root / "blobs").mkdir(parents=True)
        (root / "refs").mkdir()
        (root / "snapshots" / "abc").mkdir(parents=True)
        (root / "blobs" / "c0ffee").write_text(json.dumps(cfg))
        (root / "snapshots" / "abc" / "config.json").symlink_to(root / "blobs" / "c0ffee")
        (root / "refs" / "main").write_text("abc")
    rows = {r["name"]: r for r in families.hub_models(tmp_path)}
    assert set(rows) == {"apple/DiffuCoder-7B-Instruct", "GSAI-ML/LLaDA-8B-Base"}
    assert rows["apple/DiffuCoder-7B-Instruct"]["preset"] == "diffucoder-instruct"
    assert rows["GSAI-ML/LLaDA-8B-Base"]["family"] == "llada" and rows["GSAI-ML/LLaDA-8B-Base"]["d_model"] == 4096


def test_remote_code_is_opt_in_and_its_failure_is_one_clear_line(dream_dir):
    with pytest.raises(CheckpointError, match="its own modelling code failed"):
        load_engine(dream_dir, trust_remote_code=True)  # the folder ships no modeling_dream.py


def test_continuations_are_cut_where_the_hole_ends():
    """DiffusionGemma never sees the suffix: the hole kind decides where its free continuation stops."""
    from diffucode.continuation import cut as _cut

    assert _cut("x + 1)\nfoo()", "expression", "y = (", 1) == "x + 1)"
    assert _cut("return y\n    z = 1\nprint(3)\n", "statement", "    ", None) == "return y\n    z = 1"
    assert _cut("\n    return x\n\ndef g():\n", "block_body", "def f():", None) == "\n    return x"


# -- the same front ends: language server and eval harness --------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("family", ["dream", "llada", "diffusion_gemma"])
def test_language_server_and_eval_harness_run_each_family(family, dream_dir, llada, gemma, tmp_path):
    """`model` in the server's settings and `--model` in `diffucode eval` take a family folder as they take ours."""
    folder = {"dream": dream_dir, "llada": llada[0], "diffusion_gemma": gemma[0]}[family]
    check_server_and_eval(folder, tmp_path, refuses_infill=family == "diffusion_gemma")


def check_server_and_eval(folder: Path, tmp_path: Path, *, refuses_infill: bool) -> None:
    """A real language server with `model` = folder answers inline completion and infill (or refuses
    infill with the family's reason, as a JSON-RPC error), and `diffucode eval` runs one HumanEval task."""
    from tests.benchdata import DATA, load_or_skip
    from tests.test_lsp_tcp import tcp_server

    with tcp_server(tmp_path / "server.log") as (_, c):
        c.send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"processId": None, "capabilities": {},
                "initializationOptions": {"model": str(folder), "validate": False, "steps": 2, "maxNewTokens": 6,
                                          "debounceMs": 0, "threads": 1}}})
        c.response(1)
        c.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
        uri = "file:///tmp/fam/a.py"
        c.send({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {
            "uri": uri, "languageId": "python", "version": 1, "text": SRC}}})
        c.send({"jsonrpc": "2.0", "id": 2, "method": "textDocument/inlineCompletion", "params": {
            "textDocument": {"uri": uri}, "position": {"line": 3, "character": 8}, "context": {"triggerKind": 1}}})
        assert "items" in c.response(2, timeout=120)["result"]
        c.send({"jsonrpc": "2.0", "id": 3, "method": "diffucode/infill", "params": {
            "textDocument": {"uri": uri},
            "range": {"start": {"line": 3, "character": 4}, "end": {"line": 3, "character": 12}}}})
        reply = c.response(3, timeout=120)
        if refuses_infill:  # the family's reason, as a JSON-RPC error
            assert reply["error"]["code"] == -32803 and "complete" in reply["error"]["message"]
        else:
            assert reply["result"]["candidates"] and reply["result"]["edit"] is not None
        c.send({"jsonrpc": "2.0", "id": 4, "method": "diffucode/status"})
        st = c.response(4)["result"]
        assert st["loaded"] is True and st["loadError"] is None

    load_or_skip("humaneval")
    out = tmp_path / "run"
    code = cli.main(["eval", "humaneval", "--model", str(folder), "--data-dir", str(DATA), "--limit", "1",
                     "--max-new-tokens", "8", "--steps", "2", "--out", str(out), "--quiet"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples"] == 1 and summary["complete"]


# -- approximate K/V cache for public checkpoints ------------------------------------------------------
@pytest.mark.parametrize("which", ["dream", "llada"])
def test_kv_cache_of_transformers_models_is_exact_until_the_hole_changes(which, dream_engine, llada):
    from diffucode.denoiser import CachedDenoiser
    from diffucode.sampler import sample

    den = (dream_engine if which == "dream" else llada[2]).denoiser
    assert den.cacheable
    ids = torch.randint(0, 250, (2, 24), generator=torch.Generator().manual_seed(3))
    active = torch.tensor([[8, 9, 10, 11], [14, 15, 16, 17]])
    with torch.no_grad():
        full = den.logits(ids, active)
        logits, cache = den.prefill(ids, active)
        assert torch.allclose(logits, full, atol=1e-5)
        assert torch.allclose(den.forward_cached(ids, cache, active), full, atol=1e-5)
        picked = den.forward_cached(ids, cache, active, torch.tensor([[1], [3]]))  # ranks into `active`
        assert torch.allclose(picked, torch.stack([full[0, 1], full[1, 3]])[:, None], atol=1e-5)
        changed = ids.clone()
        changed[0, 9] = 7  # a hole token changes: the context's cached keys are now slightly stale
        approx, exact = den.forward_cached(changed, cache, active), den.logits(changed, active)
        assert (approx - exact).abs().max() < 0.5 * (exact - full).abs().max()
        assert torch.allclose(den.forward_cached(ids, cache, active), full, atol=1e-5)  # the cache was not changed

    masked = ids.clone()
    masked[:, 8:12] = den.mask_id
    exact = sample(den, masked, steps=4)
    assert torch.equal(sample(CachedDenoiser(den, refresh_every=1), masked, steps=4).ids, exact.ids)
    approx = CachedDenoiser(den, refresh_every=3)
    out = sample(approx, masked, steps=4)
    assert not (out.ids == den.mask_id).any() and approx.full_forwards == 2


@pytest.mark.parametrize("which", ["dream", "llada"])
def test_a_one_row_cache_serves_a_batch_of_rows(which, dream_engine, llada):
    """scoring.py scores many texts in one hole against one prefill: each row as if it were alone."""
    den = (dream_engine if which == "dream" else llada[2]).denoiser
    ids = torch.randint(0, 250, (1, 24), generator=torch.Generator().manual_seed(4))
    active = torch.arange(8, 14)
    rows = ids.repeat(3, 1)
    rows[1, 9], rows[2, 8:11] = 7, den.mask_id
    with torch.no_grad():
        _, cache = den.prefill(ids, active[None])
        together = den.forward_cached(rows, cache, active.expand(3, -1), torch.tensor([[0, 2], [1, 1], [5, 3]]))
        for r, pick in enumerate(([0, 2], [1, 1], [5, 3])):
            alone = den.forward_cached(rows[r : r + 1], cache, active[None], torch.tensor([pick]))
            assert torch.allclose(together[r], alone[0], atol=1e-5)


def test_presets_decode_without_the_cache_and_defaults_use_it(dream_engine, monkeypatch):
    assert families.preset_settings("diffucoder-instruct")["cache_refresh"] is None
    calls = []
    real = type(dream_engine.denoiser).forward_cached
    monkeypatch.setattr(type(dream_engine.denoiser), "forward_cached",
                        lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    src = "def f(x):\n    return x\n"
    infill.infill(dream_engine, src, [(src.index("x\n"), src.index("x\n") + 1)],
                  infill.InfillSettings(length_mode="fixed", length=6))
    assert calls, "the default settings did not use the K/V cache"
    calls.clear()
    infill.infill(dream_engine, src, [(src.index("x\n"), src.index("x\n") + 1)],
                  infill.InfillSettings(**families.preset_settings("diffucoder-instruct", max_new_tokens=6, steps=6)))
    assert not calls


def test_int8_quantizes_public_checkpoints_on_the_cpu_and_auto_decides_by_measurement(dream_dir, monkeypatch):
    from diffucode import loading

    plain = load_engine(dream_dir)
    assert plain.runtime == {"quantize": "none"}
    q = load_engine(dream_dir, quantize="int8")
    assert q.runtime == {"quantize": "int8"}
    linears = [type(m).__module__ for m in q.denoiser.model.modules() if type(m).__name__ == "Linear"]
    assert linears and all(m.startswith("torch.ao.nn.quantized") for m in linears)  # the head too
    ids = torch.tensor([list(range(5, 17))])
    drift = (q.denoiser.logits(ids) - plain.denoiser.logits(ids)).abs().max()
    assert 0 < drift < 0.5  # int8, but the same model
    for timings, want in (([2.0, 1.0], "int8"), ([1.0, 1.0], "none")):  # (float ms, int8 ms) of one layer
        monkeypatch.setattr(loading, "_best_ms", lambda calls, repeats, t=list(timings): t)
        auto = load_engine(dream_dir, quantize="auto")
        assert auto.runtime["quantize"] == want and auto.runtime["chosen_by"] == "auto"
    with pytest.raises(ConfigError, match="own models only"):
        load_engine(dream_dir, compile="default")


def test_family_on_a_diffucode_folder_is_a_one_line_error(tiny_model_dir):
    # It used to build a default-size transformers model from the diffucode config (tens of GB).
    with pytest.raises(ConfigError, match="diffucode model folder"):
        load_engine(tiny_model_dir, family="dream")


# -- declared capabilities ------------------------------------------------------------------------------------
def test_every_family_declares_its_capabilities_and_does_what_it_declares(tiny_engine, dream_engine, llada, gemma,
                                                                          tmp_path):
    """Each engine states cacheable / expand / infill_frame / complete (engine.py, denoiser.Denoiser); a
    family that claims the K/V cache decodes the same tokens with it refreshed every step as without it."""
    dreamon = load_engine(_dream_folder(tmp_path / "DreamOn-v0-7B", dreamon=True))
    engines = {"diffucode": tiny_engine, "dream": dream_engine, "llada": llada[2], "dreamon": dreamon,
               "gemma": gemma[1]}
    span = (SRC.index("    y"), SRC.index("    return"))
    for name, eng in engines.items():
        den = eng.denoiser
        assert isinstance(den.cacheable, bool) and isinstance(den.infill_frame, tuple), name
        assert (den.expand_id is None) == (den.delete_id is None), name
        assert (eng.complete is not None) == (name == "gemma"), name  # only DiffusionGemma completes by continuation
        assert set(eng.refuses) == ({"infill", "rewrite", "instruct"} if name == "gemma" else set()), name
        if den.cacheable:
            kw = dict(validate=False, length=6, steps=6, temperature=0.0, threshold=None)
            cached = infill.infill(eng, SRC, [span], infill.InfillSettings(cache_refresh=1, **kw))
            plain = infill.infill(eng, SRC, [span], infill.InfillSettings(cache_refresh=None, **kw))
            assert [c.edits for c in cached.candidates] == [c.edits for c in plain.candidates], name
    assert engines["dreamon"].denoiser.expand_id is not None and engines["dreamon"].denoiser.infill_frame != ((), ())
    assert not engines["gemma"].denoiser.cacheable and engines["diffucode"].denoiser.cacheable
