"""The laptop-class families (Open-dCoder, CoDA, dLLM's A2D MDLM / BD3LM, SDAR) through diffucode's front
ends, on tiny random models in each family's on-disk format with a real (small) BPE tokenizer: loading
without remote code, `complete` / `infill` / `rewrite` from the command line (or a one-line refusal
for block models), the exact block K/V cache, and the errors a user meets. Decoding parity with the
authors is tests/test_parity.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

tf = pytest.importorskip("transformers")

from safetensors.torch import save_file  # noqa: E402

from diffucode import blocks, cli, infill  # noqa: E402
from diffucode.errors import CheckpointError, ConfigError  # noqa: E402
from diffucode.loading import load_engine, quantize_int8  # noqa: E402
from tests.test_families import SRC, check_server_and_eval, one_thread, write_bpe_tokenizer  # noqa: E402,F401

QWEN = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 8, "max_position_embeddings": 512, "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-6, "hidden_act": "silu", "torch_dtype": "float32"}
# family -> (folder name, transformers class, config.json keys, special tokens, tied head, lm_head stored anyway)
FORMATS = {
    "open_dcoder": ("open-dcoder-0.5B", "Qwen2", {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"]},
                    ["<|im_start|>", "<|im_end|>", "<M>"], True, False),
    "coda": ("CoDA-v0-Instruct", "Qwen3", {"model_type": "CoDA", "architectures": ["CoDALanguageModel"],
                                           "auto_map": {"AutoModel": "modeling_coda.CoDALanguageModel"},
                                           "mask_block_sizes": [4, 8]},
             ["<|im_start|>", "<|im_end|>", "<|mask|>"], False, True),
    "a2d": ("Qwen3-0.6B-diffusion-mdlm-v0.1", "Qwen3", {"model_type": "a2d-qwen3",
                                                         "architectures": ["A2DQwen3LMHeadModel"]},
            ["<|im_start|>", "<|im_end|>", "<|mask|>"], True, True),
    "a2d_bd3lm": ("Qwen3-0.6B-diffusion-bd3lm-v0.1", "Qwen3", {"model_type": "a2d-qwen3",
                                                                "architectures": ["A2DQwen3LMHeadModel"]},
                  ["<|im_start|>", "<|im_end|>", "<|mask|>"], True, False),
    "sdar": ("SDAR-1.7B-Chat", "Qwen3", {"model_type": "sdar", "architectures": ["SDARForCausalLM"], "block_size": 4,
                                         "attn_implementation": "flex_attention"},
             ["<|im_start|>", "<|im_end|>", "<|MASK|>"], False, True),
}
BLOCK = ("a2d_bd3lm", "sdar")


def build(root: Path, family: str, *, seed: int = 0, specials: list[str] | None = None) -> Path:
    name, arch, keys, default_specials, tied, store_head = FORMATS[family]
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    mask = default_specials[-1]  # the mask token is listed last
    n_tok = write_bpe_tokenizer(folder, specials or default_specials, {
        "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|im_end|>" if family != "open_dcoder"
        else "<|endoftext|>", "pad_token": "<|endoftext|>", "mask_token": mask if specials is None else None})
    config = {**QWEN, **keys, "vocab_size": n_tok, "tie_word_embeddings": tied}
    (folder / "config.json").write_text(json.dumps(config))
    cfg = getattr(tf, f"{arch}Config")(**{k: v for k, v in config.items()
                                          if k not in ("model_type", "architectures", "auto_map")})
    torch.manual_seed(seed)
    state = {k: v.detach().clone().contiguous() for k, v in getattr(tf, f"{arch}ForCausalLM")(cfg).state_dict().items()}
    if tied and not store_head:
        state.pop("lm_head.weight")
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("laptop")
    return {family: build(root, family) for family in FORMATS}


@pytest.mark.parametrize("family", list(FORMATS))
def test_each_family_loads_without_remote_code_and_declares_what_it_does(family, folders):
    eng = load_engine(folders[family])
    assert eng.meta["family"] == family and eng.meta["trust_remote_code"] is False
    assert eng.meta["preset"] == {"open_dcoder": "open-dcoder", "coda": "coda", "a2d": "a2d-mdlm",
                                  "a2d_bd3lm": "a2d-bd3lm", "sdar": "sdar"}[family]
    den = eng.denoiser
    assert den.mask_id == eng.tokenizer.token_id(FORMATS[family][3][-1])
    if family in BLOCK:
        assert set(eng.refuses) == {"infill", "rewrite", "instruct"} and eng.complete is not None
        assert den.block_length == {"a2d_bd3lm": 32, "sdar": 4}[family]
    else:
        assert not eng.refuses and eng.complete is None
        assert den.shift == (family in ("open_dcoder", "coda"))


@pytest.mark.parametrize("family", list(FORMATS))
def test_complete_infill_and_rewrite_from_the_command_line(family, folders, tmp_path, capsysbinary):
    p = tmp_path / "a.py"
    p.write_text(SRC)
    common = ["--model", str(folders[family]), "--no-validate", "--steps", "4", "--max-new-tokens", "8", "--quiet",
              "--context", "none"]
    code = cli.main(["complete", f"{p}:4:9", *common])
    out, err = capsysbinary.readouterr()
    assert code in (0, 1), err.decode()  # 1: the tiny random model's only candidate was refused (destructive)
    lines = SRC.splitlines(keepends=True)
    if code == 0:
        assert out.decode().startswith("".join(lines[:3])) and out.decode().endswith("".join(lines[4:]))
    for job in (["infill", f"{p}:4-4"], ["rewrite", f"{p}:4-4"], ["rewrite", f"{p}:4-4", "--instruction", "shorter"]):
        code = cli.main([*job, *common])
        _, err = capsysbinary.readouterr()
        if family in BLOCK:  # one line with the reason, nothing written
            assert code == 2 and "use `diffucode complete`" in err.decode() and len(err.decode().splitlines()) == 1
        elif "--instruction" not in job:
            assert code in (0, 1), err.decode()
    assert p.read_text() == SRC


@pytest.mark.parametrize("family", BLOCK)
def test_the_block_cache_is_exact(family, folders):
    """Each block decoded against the cache sees the same logits as a full forward under the staircase mask."""
    den = load_engine(folders[family]).denoiser
    L, prompt = den.block_length, list(range(5, 5 + 11))
    new = blocks.sample_blocks(den, prompt, max_new_tokens=2 * L, steps=L, allow_ids=den.forbidden_ids)
    seq = torch.tensor([prompt + new])
    pad = (-len(prompt)) % L if den.align == "prompt_end" else 0
    blk = (torch.arange(seq.size(1)) + pad) // L
    staircase = (blk[:, None] >= blk[None, :])[None, None]
    with torch.no_grad():
        full = den.model(input_ids=seq, attention_mask=staircase).logits
    cache = den.prefill(seq[:, :len(prompt)] if den.align == "prompt_end" else seq[:, :0], pad)
    start = len(prompt) if den.align == "prompt_end" else 0
    for s in range(start, seq.size(1), L):
        if s + L > seq.size(1):
            break
        block = seq[:, s:s + L]
        assert torch.allclose(den.block_logits(block, cache, s), full[:, s:s + L], atol=1e-5)
        den.append(block, cache, s)


def test_steps_per_block_follow_each_family():
    assert blocks.steps_per_block(50, 100, 32, "prompt_end") == 13  # dLLM: ceil(50 / ceil(100 / 32))
    assert blocks.steps_per_block(50, 100, 32, "start") == 16  # the job's tokens per forward, per block
    assert blocks.steps_per_block(256, 256, 4, "start") == 4 and blocks.steps_per_block(8, 16, 32, "prompt_end") == 8
    assert blocks.rounded_counts(10, 4) == [2, 3, 2, 3] and blocks.rounded_counts(4, 3) == [1, 1, 2]  # dLLM's


def test_block_models_refuse_schedules_they_cannot_decode_with(folders):
    eng = load_engine(folders["a2d_bd3lm"])
    with pytest.raises(ConfigError, match="block model decodes with schedule"):
        infill.complete(eng, SRC, SRC.index("return") + 6, infill.InfillSettings(schedule="remask", context="none"))


def test_block_models_continue_the_prefix_and_stop_at_the_end_of_text(folders):
    eng = load_engine(folders["sdar"])
    res = infill.complete(eng, SRC, SRC.index("return") + len("return"),
                          infill.InfillSettings(steps=8, max_new_tokens=8, validate=False, context="none"))
    assert res.candidates and res.forwards >= 1
    ids = blocks.until_stop([9, 8, eng.denoiser.eos_ids[0], 7], eng.denoiser.eos_ids, eng.denoiser.mask_id)
    assert ids == [9, 8]


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FORMATS))
def test_language_server_and_eval_harness_run_each_laptop_family(family, folders, tmp_path):
    check_server_and_eval(folders[family], tmp_path, refuses_infill=family in BLOCK)


def test_a_qwen2_checkpoint_without_a_mask_token_is_refused_in_one_line(tmp_path, capsysbinary):
    folder = build(tmp_path, "open_dcoder", specials=["<|im_start|>", "<|im_end|>"])  # an autoregressive Qwen2
    with pytest.raises(CheckpointError, match="mask token"):
        load_engine(folder)
    p = tmp_path / "a.py"
    p.write_text(SRC)
    code = cli.main(["complete", f"{p}:4:9", "--model", str(folder)])
    err = capsysbinary.readouterr()[1].decode()
    assert code == 2 and "<M>" in err and len(err.strip().splitlines()) == 1 and p.read_text() == SRC


def test_unknown_architectures_name_the_supported_ones(tmp_path):
    folder = build(tmp_path, "coda")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "model_type": "mistral", "architectures": ["MistralX"]}))
    with pytest.raises(CheckpointError) as err:
        load_engine(folder)
    assert all(f in str(err.value) for f in ("open_dcoder", "coda", "a2d", "sdar", "dream", "llada"))


def test_int8_quantizes_a_tied_head_too_and_keeps_the_embedding(folders):
    eng = load_engine(folders["open_dcoder"], quantize="int8")  # Open-dCoder ties its head to the embedding
    assert eng.runtime == {"quantize": "int8"}
    model = eng.denoiser.model
    assert type(model.lm_head).__module__.startswith("torch.ao.nn.quantized")
    assert type(model.model.layers[0].mlp.up_proj).__module__.startswith("torch.ao.nn.quantized")
    assert model.get_input_embeddings().weight.dtype == torch.float32
    ids = torch.tensor([list(range(5, 17))])
    # Loading releases each float weight's memory as soon as its int8 copy exists: the same model as
    # quantizing it all at once, the tied embedding kept.
    plain = load_engine(folders["open_dcoder"])
    quantize_int8(plain.denoiser.model)
    assert torch.equal(eng.denoiser.logits(ids), plain.denoiser.logits(ids))
