"""Decoding parity: diffucode decodes like each family's authors.

Every file in tests/fixtures/parity/ records what the authors' own published generation function
produced — run outside this repository by the script quoted in its `made_by` (repository, commit, file,
function, transformers version, any import-only patch) — on a tiny random checkpoint in the family's
exact on-disk format. The checkpoint is rebuilt here from the fixture (tests/parity_kit.py) and must
match the recorded weights checksum; then diffucode's decoder, with the authors' settings mapped onto
its own (`settings_for`), must produce the same token ids.

The authors' decoders never ban a token, while diffucode never writes special tokens as content: the
replays allow every id (`allow_ids`), the one difference between a replay and diffucode's defaults.
SDAR's README script (generate.py) has no temperature-0 path (its greedy form makes every confidence
1.0 and leaves the order to torch.topk's ties), so its evaluation decoder (huggingface_bd3.py) is the
one replayed. DiffusionGemma runs transformers' own generate (tests/test_families.py compares them).
"""

import json
import math
from pathlib import Path

import pytest
import torch

from diffucode import blocks, families
from diffucode.loading import load_engine
from diffucode.sampler import sample
from tests.parity_kit import build_folder

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "parity").glob("*.json"))
ALG = {"entropy": "entropy", "maskgit_plus": "confidence", "topk_margin": "margin", "low_confidence": "confidence"}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # float results independent of the machine's core count
    yield
    torch.set_num_threads(threads)


def rebuild(fx: dict, tmp_path: Path) -> Path:
    f = fx["folder"]
    folder = tmp_path / fx["family"]
    checksum = build_folder(folder, config=f["config"], shapes=f["shapes"], seed=f["seed"], vocab_size=f["vocab_size"],
                            specials=f["specials"], tokenizer_config=f.get("tokenizer_config"))
    assert checksum == pytest.approx(f["checksum"], rel=1e-12), "the weights differ from the ones the authors ran"
    return folder


def settings_for(family: str, call: dict) -> dict:
    """The authors' settings of one fixture call as diffucode decoder keywords."""
    kw = call["kwargs"].get("generation_config", call["kwargs"])
    kw = {**kw, **{k: v for k, v in call.get("effective_generation_config", {}).items() if k in ("top_k", "top_p")}}
    if family == "llada":
        block = kw["block_length"] if kw["block_length"] < kw["gen_length"] else None
        return dict(new=kw["gen_length"], steps=kw["steps"], strategy="confidence", schedule="even", block_length=block)
    if family in ("dream", "coda", "open_dcoder"):
        schedule = "remask" if kw["alg"] == "p2" else "linear"
        return dict(new=kw["max_new_tokens"], steps=kw["steps"], strategy=ALG.get(kw["alg"], "confidence"),
                    schedule=schedule, top_k=kw.get("top_k"), top_p=kw.get("top_p"))
    if family == "a2d":
        block = kw["block_size"] if kw["block_size"] < kw["max_new_tokens"] else None
        return dict(new=kw["max_new_tokens"], steps=kw["steps"], strategy="confidence", schedule="rounded",
                    block_length=block)
    if family == "a2d_bd3lm":  # dLLM splits the steps over the blocks
        per_block = math.ceil(kw["steps"] / math.ceil(kw["max_new_tokens"] / kw["block_size"]))
        return dict(new=kw["max_new_tokens"], steps=per_block, schedule="rounded", block_length=kw["block_size"])
    if family == "sdar":
        return dict(new=kw["gen_length"], steps=kw["denoising_steps"], schedule="even", block_length=kw["block_length"],
                    threshold=kw["threshold"] if kw["threshold"] < 1 else None)
    raise AssertionError(f"no replay for {family}")


def replay(engine, family: str, call: dict) -> list[tuple[list[int], list[int]]]:
    """(ours, the authors') token ids per row of one call, compared whole where the authors' decoder
    and ours decode the same positions; block models are compared up to their end of text."""
    den, s = engine.denoiser, settings_for(family, call)
    rows = []
    for prompt, want in zip(call["prompt_ids"], call["output_ids"]):
        if family in ("sdar", "a2d_bd3lm"):
            den.block_length = s["block_length"]  # the call's block size (the checkpoint's own by default)
            got = blocks.sample_blocks(den, prompt, max_new_tokens=s["new"], steps=s["steps"], schedule=s["schedule"],
                                       threshold=s.get("threshold"), stop_ids=den.eos_ids, allow_ids=den.forbidden_ids)
            # SDAR returns prompt + blocks; BD3LM left-pads the batch's prompts to one whole number of blocks
            longest = max(map(len, call["prompt_ids"]))
            padded = -(-longest // s["block_length"]) * s["block_length"]
            gen = want[len(prompt):] if family == "sdar" else want[padded:]
            n = next((i + 1 for i, t in enumerate(gen) if t in den.eos_ids), min(len(gen), s["new"]))
            rows.append((got[:n], gen[:n]))  # through the end of text: what follows it is batch padding or masks
            continue
        infill = "infill" in call  # Open-dCoder's infilling call: the prompt already holds the hole's masks
        ids = torch.tensor([prompt if infill else prompt + [den.mask_id] * s["new"]])
        out = sample(den, ids, steps=s["steps"], strategy=s.get("strategy", "confidence"), schedule=s["schedule"],
                     top_k=s.get("top_k"), top_p=s.get("top_p"), block_length=s.get("block_length"),
                     allow_ids=den.forbidden_ids)
        got = out.ids[0].tolist()
        rows.append((got, want[: len(got)]))
    return rows


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_diffucode_decodes_exactly_like_the_authors(path, tmp_path):
    fx = json.loads(path.read_text(encoding="utf-8"))
    engine = load_engine(rebuild(fx, tmp_path), family="bd3lm" if "bd3lm" in path.stem else None)
    family = engine.meta["family"]
    assert family == {"a2d-mdlm": "a2d", "a2d-bd3lm": "a2d_bd3lm"}.get(fx["family"].rsplit("-", 1)[0],
                                                                        fx["family"].replace("-", "_"))
    for call in fx["calls"]:
        for got, want in replay(engine, family, call):
            assert want and got == want, f"{path.stem}: {call['kwargs']}"


def test_every_masked_family_has_a_fixture_with_its_provenance():
    made = {json.loads(p.read_text())["family"]: json.loads(p.read_text())["made_by"] for p in FIXTURES}
    covered = {f.replace("-", "_").removesuffix("_qwen2").removesuffix("_qwen3") for f in made}
    assert covered >= {"llada", "dream", "coda", "open_dcoder", "a2d_mdlm", "a2d_bd3lm", "sdar"}
    for family, by in made.items():
        assert by["repo"] and len(by["commit"]) == 40 and by["file"] and by["function"] and by["script"], family


@pytest.mark.parametrize("preset,schedule", [("dream-coder", "linear"), ("diffucoder-instruct", "linear"),
                                             ("coda", "linear"), ("llada", "even"), ("a2d-mdlm", "rounded"),
                                             ("a2d-bd3lm", "rounded"), ("open-dcoder", "remask"), ("sdar", "even")])
def test_presets_decode_with_the_schedule_the_fixtures_replay(preset, schedule):
    assert families.preset_settings(preset)["schedule"] == schedule
