import builtins
import errno
import json
import os
from pathlib import Path

import pytest
import torch

from diffucode import checkpoint
from diffucode.errors import CheckpointError
from diffucode.loading import check_model
from diffucode.model import PRESETS, DiffusionTransformer, ModelConfig, preset
from diffucode.testing import sample_tokenizer


def _model(**kw):
    torch.manual_seed(0)
    return DiffusionTransformer(preset("tiny", vocab_size=kw.pop("vocab_size", 97), **kw)).eval()


def test_shapes_and_positions_subset():
    m = _model()
    ids = torch.randint(0, 97, (2, 10))
    full = m(ids)
    assert full.shape == (2, 10, 97)
    pos = torch.tensor([[1, 4, 9], [0, 2, 3]])
    part = m(ids, positions=pos)
    assert part.shape == (2, 3, 97)
    assert torch.allclose(part, full.gather(1, pos[..., None].expand(-1, -1, 97)), atol=1e-5)
    shared = m(ids, positions=torch.tensor([3, 5]))
    assert torch.allclose(shared, full[:, [3, 5]], atol=1e-5)


def test_attention_is_bidirectional():
    m = _model()
    ids = torch.randint(0, 97, (1, 12))
    changed = ids.clone()
    changed[0, 10] = (changed[0, 10] + 1) % 97
    # Position 2 must see a change at position 10 (after it): the attention is not causal.
    assert not torch.allclose(m(ids)[0, 2], m(changed)[0, 2])


def test_key_padding_mask_hides_padded_keys():
    m = _model()
    ids = torch.randint(0, 97, (1, 8))
    keep = torch.tensor([[True] * 6 + [False] * 2])
    a = m(ids, key_padding_mask=keep)[:, :6]
    other = ids.clone()
    other[0, 6:] = (other[0, 6:] + 5) % 97
    b = m(other, key_padding_mask=keep)[:, :6]
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(a, m(ids[:, :6]), atol=1e-5)


def test_too_long_input_raises():
    m = _model(max_seq_len=16)
    with pytest.raises(ValueError, match="exceeds"):
        m(torch.zeros(1, 17, dtype=torch.long))


def test_config_round_trip_and_presets():
    for name, cfg in PRESETS.items():
        assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError):
        ModelConfig.from_dict({"d_model": 64, "bogus": 1})
    with pytest.raises(KeyError):
        preset("huge")


@pytest.mark.parametrize("shard_bytes", [checkpoint.MAX_SHARD_BYTES, 150_000])
def test_save_load_round_trip_is_bit_exact(tmp_path, shard_bytes):
    tok = sample_tokenizer(512)
    m = _model(vocab_size=tok.vocab_size)
    folder = checkpoint.save(tmp_path / "m", m, tok, meta={"infill": {"pad_tail": True}}, max_shard_bytes=shard_bytes)
    shards = sorted(p.name for p in folder.glob("model*.safetensors"))
    if shard_bytes < checkpoint.MAX_SHARD_BYTES:
        assert len(shards) > 1 and (folder / checkpoint.INDEX_NAME).is_file()
    else:
        assert shards == ["model.safetensors"]
    assert all(p.stat().st_size < 15 * 10**6 for p in folder.iterdir())
    ck = checkpoint.load(folder)
    for (k, a), (k2, b) in zip(sorted(m.state_dict().items()), sorted(ck.model.state_dict().items())):
        assert k == k2 and torch.equal(a, b), k
    assert ck.model.lm_head.weight is ck.model.embed.weight  # re-tied
    assert ck.meta["infill"]["pad_tail"] is True and ck.meta["format_version"] == checkpoint.FORMAT_VERSION
    ids = torch.randint(0, tok.vocab_size, (1, 9))
    assert torch.equal(m(ids), ck.model(ids))
    assert ck.tokenizer.encode("def f(): pass") == tok.encode("def f(): pass")
    assert not list(folder.glob("*.bin")) and not list(folder.glob("*.pt"))


def test_float16_on_disk(tmp_path):
    tok = sample_tokenizer(512)
    m = _model(vocab_size=tok.vocab_size)
    folder = checkpoint.save(tmp_path / "m", m, tok, dtype=torch.float16)
    assert json.loads((folder / "config.json").read_text())["torch_dtype"] == "float16"
    ck = checkpoint.load(folder)
    assert ck.model.embed.weight.dtype == torch.float32
    assert torch.allclose(ck.model.embed.weight, m.embed.weight, atol=1e-3)


def _saved(tmp_path):
    tok = sample_tokenizer(512)
    return checkpoint.save(tmp_path / "m", _model(vocab_size=tok.vocab_size), tok)


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda f: None, None),
        (lambda f: (f / "config.json").unlink(), "no config.json"),
        (lambda f: (f / "config.json").write_text("{not json"), "cannot read"),
        (lambda f: (f / "tokenizer.json").unlink(), "no tokenizer.json"),
        (lambda f: (f / "tokenizer.json").write_text("garbage"), "cannot read tokenizer"),
        (lambda f: (f / "model.safetensors").unlink(), "no model.safetensors"),
        (lambda f: (f / "model.safetensors").write_bytes(b"\x00" * 100), "cannot read"),
        (lambda f: (f / "config.json").write_text(
            json.dumps({"format": "diffucode", "format_version": 99, "model": {}})), "format_version"),
        (lambda f: (f / "config.json").write_text(json.dumps({"format": "other"})), "not a diffucode checkpoint"),
        (lambda f: _rewrite_config(f, d_model=128), "do not fit"),
    ],
)
def test_broken_folders_raise_checkpoint_error(tmp_path, breakage, message):
    folder = _saved(tmp_path)
    breakage(folder)
    if message is None:
        checkpoint.load(folder)
        return
    with pytest.raises(CheckpointError, match=message):
        checkpoint.load(folder)


def test_unreadable_weights_are_reported_as_unreadable_not_missing(tmp_path, monkeypatch):
    # safetensors says "No such file or directory" for a file it may not read. chmod 000 stops a user, not
    # root: as root, open() is made to refuse the file the way it refuses a user.
    folder = _saved(tmp_path)
    weights = folder / "model.safetensors"
    if os.geteuid() != 0:
        weights.chmod(0)
    else:
        real_open = builtins.open

        def refusing_open(file, *args, **kwargs):
            if isinstance(file, (str, os.PathLike)) and Path(file) == weights:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", refusing_open)
    try:
        for load in (checkpoint.load, checkpoint.check, check_model):
            with pytest.raises(CheckpointError, match=f"cannot read {weights}: permission denied"):
                load(folder)
    finally:
        weights.chmod(0o644)


def _rewrite_config(folder, **changes):
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model"].update(changes)
    (folder / "config.json").write_text(json.dumps(cfg))


def test_missing_folder(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        checkpoint.load(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="not a folder"):
        checkpoint.load(tmp_path / "file")


def test_kv_cache_is_exact_when_nothing_changed_and_close_after_a_change():
    m = _model()
    ids = torch.randint(5, 97, (2, 40))
    pos = torch.tensor([[10, 11, 12, 13], [20, 21, 22, 23]])
    with torch.inference_mode():
        logits, cache = m.prefill(ids, positions=pos)
        assert torch.allclose(logits, m(ids, positions=pos), atol=1e-5)
        assert torch.allclose(m.forward_cached(ids, cache, pos), m(ids, positions=pos), atol=1e-5)
        assert torch.allclose(m.forward_cached(ids, cache, pos, positions=torch.tensor([[3], [0]])),
                              m(ids, positions=torch.tensor([[13], [20]])), atol=1e-5)
        before = [(k.clone(), v.clone()) for k, v in cache]
        changed = ids.clone()
        changed[0, 11] = 7  # a hole token changes: the cached context is now slightly stale
        approx, exact = m.forward_cached(changed, cache, pos), m(changed, positions=pos)
        moved = (exact - m(ids, positions=pos)).abs().max()
        assert (approx - exact).abs().max() < 0.2 * moved
        assert all(torch.equal(k, k0) and torch.equal(v, v0) for (k, v), (k0, v0) in zip(cache, before))  # pure


def test_cached_denoiser_with_refresh_every_step_matches_the_model():
    from diffucode.denoiser import CachedDenoiser, NativeDenoiser
    from diffucode.sampler import sample

    tok = sample_tokenizer(512)
    m = _model(vocab_size=tok.vocab_size)
    ids = torch.tensor([tok.encode("def f(x):\n    return ") + [tok.mask_id] * 6 + tok.encode("\n\nprint(f(1))\n")])
    exact = sample(NativeDenoiser(m, tok), ids, steps=6)
    same = sample(CachedDenoiser(NativeDenoiser(m, tok), refresh_every=1), ids, steps=6)
    assert torch.equal(exact.ids, same.ids)
    cached = CachedDenoiser(NativeDenoiser(m, tok), refresh_every=3)
    approx = sample(cached, ids, steps=6)
    assert not (approx.ids == tok.mask_id).any() and cached.full_forwards == 2
