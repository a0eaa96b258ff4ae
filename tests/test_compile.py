"""torch.compile of the denoiser: one graph per entry point and batch kind, no recompiles in real jobs,
no graph breaks, and the same text as the eager model."""

from __future__ import annotations

import pytest
import torch

from diffucode.denoiser import COMPILE_MODES, CachedDenoiser, NativeDenoiser
from diffucode.errors import ConfigError
from diffucode.infill import InfillSettings, infill, rewrite
from diffucode.loading import load_engine
from diffucode.testing import random_model

SRC = "def add(a, b):\n    return a + b\n\n\nprint(add(1, 2))\n"
SPAN = (SRC.index("a + b"), SRC.index("a + b") + 5)
JOBS = [
    InfillSettings(),  # editor defaults: threshold, K/V cache, automatic length
    InfillSettings(length_mode="fixed", length=8),
    InfillSettings(length_mode="fixed", length=8, exact=True),  # the uncached reference path
    InfillSettings(length_mode="fixed", length=5, candidates=3),  # another batch size and hole size
    InfillSettings(length_mode="fixed", length=1),  # a one-token hole
    InfillSettings(length_mode="fixed", length=1, candidates=2),  # ... in a batch
]

WARM_GRAPHS = {"default": 12, "reduce-overhead": 6}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return random_model(tmp_path_factory.mktemp("m") / "tiny", preset_name="tiny", vocab_size=512)


@pytest.fixture
def graphs(monkeypatch):
    """Compile with a backend that counts the graphs dynamo hands it and runs them eagerly (fast)."""
    made = []
    real = torch.compile

    def counting(fn, *, mode=None, **kw):
        def backend(gm, example_inputs):
            made.append(getattr(fn, "__name__", "?"))
            return gm.forward

        return real(fn, backend=backend, **kw)

    monkeypatch.setattr(torch, "compile", counting)
    torch._dynamo.reset()
    yield made
    torch._dynamo.reset()


def _texts(engine, settings):
    r = infill(engine, SRC, [SPAN], settings)
    return [c.edits[0].text for c in r.candidates]


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_after_warm_up_real_jobs_compile_nothing_new(folder, graphs, mode):
    eager = load_engine(folder)
    compiled = load_engine(folder, compile=mode)
    assert isinstance(compiled.denoiser, NativeDenoiser) and compiled.denoiser.compile == mode
    warm = list(graphs)
    # batch 1 and batch ≥ 2 graphs for each entry point, each with several positions and with one
    # (with reduce-overhead's buckets one position is padded to the bucket: no graph of its own)
    assert sorted(set(warm)) == ["forward", "forward_cached", "prefill"] and len(warm) == WARM_GRAPHS[mode]
    for settings in JOBS:
        assert _texts(compiled, settings) == _texts(eager, settings)
    r = rewrite(compiled, SRC, SPAN, InfillSettings())  # pseudo-likelihood scoring: the plain forward at batch k
    assert r.candidates == rewrite(eager, SRC, SPAN, InfillSettings()).candidates
    assert graphs == warm, f"recompiled during jobs: {graphs[len(warm):]}"


def test_every_compiled_load_compiles_afresh(folder, graphs):
    """Dynamo keeps compiled versions per function and gives up after 8: each load starts clean."""
    for mode in ("default", "reduce-overhead", "default"):
        before = len(graphs)
        load_engine(folder, compile=mode)
        assert len(graphs) - before == WARM_GRAPHS[mode]
    # quantize "auto" (the language server's default) steps aside for compile: float weights, nothing measured
    eng = load_engine(folder, compile="default", quantize="auto")
    assert eng.runtime == {"quantize": "none"} and eng.denoiser.compile == "default"


@pytest.mark.parametrize("entry", ["forward", "prefill", "forward_cached"])
def test_entry_points_trace_without_graph_breaks(folder, entry):
    model = load_engine(folder).denoiser.model
    ids = torch.randint(5, 500, (2, 40))
    pos = torch.tensor([[10, 11, 12], [20, 21, 22]])
    args = {"forward": (ids, pos), "prefill": (ids, pos)}
    if entry == "forward_cached":
        with torch.no_grad():
            _, cache = model.prefill(ids, pos)
        args[entry] = (ids, cache, pos)
    torch._dynamo.reset()
    with torch.no_grad():
        report = torch._dynamo.explain(getattr(model, entry))(*args[entry])
    assert report.graph_break_count == 0 and report.graph_count == 1


def test_bad_compile_requests_are_config_errors(folder):
    with pytest.raises(ConfigError, match="compile mode"):
        load_engine(folder, compile="fastest")
    with pytest.raises(ConfigError, match="do not combine"):
        load_engine(folder, compile="default", quantize="int8")
    assert COMPILE_MODES[0] == "none"


def test_eval_cli_offers_the_same_compile_modes():
    from diffucode_evals.cli import COMPILE_MODES as EVAL_MODES

    assert EVAL_MODES == COMPILE_MODES


@pytest.mark.slow
def test_inductor_compiled_engine_matches_eager(folder):
    """The real compiler (inductor, C++ on the CPU): same logits within float tolerance, same texts."""
    torch._dynamo.reset()
    eager = load_engine(folder)
    compiled = load_engine(folder, compile="default")
    ids = torch.randint(5, 500, (1, 50))
    pos = torch.tensor([[20, 21, 22, 23, 24, 25]])
    with torch.no_grad():
        assert torch.allclose(compiled.denoiser.logits(ids, pos), eager.denoiser.logits(ids, pos), atol=1e-4)
        a, b = CachedDenoiser(eager.denoiser), CachedDenoiser(compiled.denoiser)
        for _ in range(3):  # a prefill, then cached steps
            assert torch.allclose(a.logits(ids, pos), b.logits(ids, pos), atol=1e-4)
    for settings in JOBS[:2]:
        assert _texts(compiled, settings) == _texts(eager, settings)
    torch._dynamo.reset()


def test_the_language_servers_inference_thread_compiles_and_generates(folder, graphs):
    """The server loads and runs models on a worker thread: compiling there works the same."""
    from concurrent.futures import ThreadPoolExecutor

    from diffucode_lsp.worker import default_loader

    with ThreadPoolExecutor(max_workers=1) as pool:
        engine = pool.submit(default_loader, str(folder), "cpu", compile="default").result()
        warm = len(graphs)
        texts = pool.submit(_texts, engine, InfillSettings()).result()
    assert warm == 12 and len(graphs) == warm and texts == _texts(load_engine(folder), InfillSettings())


def test_a_failing_compiler_is_one_clear_error(folder, monkeypatch):
    def broken(fn, **kw):
        def call(*a, **k):
            raise RuntimeError("InductorError: CppCompileError: C++ compile error\n<hundreds of lines>")

        return call

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.raises(ConfigError,
                       match=r"torch.compile \(mode default\) failed: RuntimeError: InductorError.*use compile none"):
        load_engine(folder, compile="default")


def _bucket_jobs():
    """Infill jobs over contexts of many lengths and holes of many sizes."""
    for n in range(1, 40, 3):
        body = "".join(f"    x{i} = x{i - 1} + {i}\n" for i in range(1, n))
        src = f"def f(x0):\n{body}    return x0\n"
        span = (src.index("return"), src.index("return") + 6)
        yield src, span, InfillSettings(length_mode="fixed", length=1 + n % 21, candidates=1 + n % 3)


def test_buckets_bound_the_shapes_and_keep_the_logits(folder):
    """reduce-overhead pads calls to a few shapes (one CUDA graph each): every context is a multiple
    of T_BUCKET tokens or the model's whole context, every position list a multiple of P_BUCKET, and
    the padded calls give the unpadded logits."""
    plain = load_engine(folder)
    engine = load_engine(folder)
    model = engine.denoiser.model
    seen = []

    def recording(fn):
        def call(ids, *args, **kwargs):
            rows = [a for a in (*args[1:], *kwargs.values()) if isinstance(a, torch.Tensor) and a.dtype == torch.long]
            seen.append((ids.size(1), *(r.size(-1) for r in rows)))
            return fn(ids, *args, **kwargs)

        return call

    for name in ("forward", "prefill", "forward_cached"):
        setattr(model, name, recording(getattr(model, name)))
    engine.denoiser = NativeDenoiser(model, engine.tokenizer, buckets=True)
    assert NativeDenoiser(model, engine.tokenizer, compile="reduce-overhead").buckets
    assert not NativeDenoiser(model, engine.tokenizer, compile="default").buckets

    limit = model.cfg.max_seq_len
    for src, span, settings in _bucket_jobs():
        a = infill(engine, src, [span], settings)
        b = infill(plain, src, [span], settings)
        assert [c.edits[0].text for c in a.candidates] == [c.edits[0].text for c in b.candidates]
    widths = {s[0] for s in seen}
    rows = {r for s in seen for r in s[1:]}
    assert widths <= {w for w in range(64, limit + 1, 64)} | {limit} and len(widths) >= 2
    assert all(r % 16 == 0 for r in rows) and len(seen) > 20

    den = NativeDenoiser(model, engine.tokenizer, buckets=True)
    ref = NativeDenoiser(model, engine.tokenizer)
    for T, P in ((10, 1), (64, 5), (70, 17)):
        ids = torch.randint(5, 500, (2, T))
        pos = torch.stack([torch.randperm(T)[:P], torch.randperm(T)[:P]])
        with torch.no_grad():
            assert torch.allclose(den.logits(ids, pos), ref.logits(ids, pos), atol=1e-5)
            assert torch.allclose(den.logits(ids), ref.logits(ids), atol=1e-5)
            la, ca = den.prefill(ids, positions=pos)
            lb, cb = ref.prefill(ids, positions=pos)
            assert torch.allclose(la, lb, atol=1e-5) and ca[0][0].size(2) % 64 == 0
            changed = ids.clone()
            changed[:, pos[0, 0]] = 7
            assert torch.allclose(den.forward_cached(changed, ca, pos), ref.forward_cached(changed, cb, pos), atol=1e-5)
            assert torch.allclose(den.forward_cached(changed, ca, pos, positions=pos[:, :1] * 0),
                                  ref.forward_cached(changed, cb, pos, positions=pos[:, :1] * 0), atol=1e-5)
            flat = pos[0]  # (P,) positions, as the model accepts them
            assert torch.allclose(den.logits(ids, flat), ref.logits(ids, flat), atol=1e-5)
            assert torch.allclose(den.forward_cached(changed, ca, flat), ref.forward_cached(changed, cb, flat),
                                  atol=1e-5)
            with pytest.raises(ValueError, match="prefill again"):  # a cache is for the length it was made at
                den.forward_cached(changed[:, :-1], ca, pos)
