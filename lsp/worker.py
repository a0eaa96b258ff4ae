"""One inference thread: the model loads there (once, lazily) and every generation job runs there.

torch already uses every core for one forward pass, so two jobs at once would only slow each other
down: jobs queue on a single-thread executor instead, and a job that is no longer wanted is either
dropped from the queue or stopped within one denoising step (its `cancel` event is polled by the
sampler through `should_stop`). The event loop only awaits futures, so the server keeps answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from diffucode.errors import CheckpointError, DiffucodeError, GenerationCancelled
from diffucode.engine import Engine

log = logging.getLogger(__name__)

Loader = Callable[..., Engine]  # (model name/folder/hub id or None, device, **load options) -> Engine
_ids = itertools.count(1)


def default_loader(model: str | None, device: str, **options) -> Engine:
    from diffucode.loading import load_engine

    return load_engine(model, device=device, **options)


@dataclass(eq=False)  # identity semantics: jobs live in sets
class Job:
    """A unit of work for the inference thread, cancellable from the event loop."""

    uri: str
    kind: str  # "inline", "infill", "rewrite", "repair"
    id: int = field(default_factory=lambda: next(_ids))
    cancel_event: threading.Event = field(default_factory=threading.Event)
    reason: str = ""

    def cancel(self, reason: str) -> None:
        if not self.cancel_event.is_set():
            self.reason = reason
            self.cancel_event.set()

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()


@dataclass
class Stats:
    done: int = 0
    cancelled: int = 0
    failed: int = 0
    forwards: int = 0
    pending: int = 0  # submitted and not finished (queued or running)
    running: str | None = None  # kind of the job on the inference thread


class Worker:
    def __init__(self, loader: Loader | None = None):
        self._loader = loader or default_loader
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="diffucode-infer")
        self._key: tuple = (None, "cpu", ())
        self._engine: Engine | None = None
        self._engine_key: tuple | None = None
        self._failure: tuple[tuple, DiffucodeError] | None = None
        self._load_task: asyncio.Task | None = None
        self._load_task_key: tuple | None = None
        self.stats = Stats()

    # -- the model ----------------------------------------------------------------------------------
    def configure(self, model: str | None, device: str, **options) -> bool:
        """Choose the model and its load options (quantize, compile); True when that differs from the
        current choice (whose engine is then dropped)."""
        key = (model, device, tuple(sorted(options.items())))
        if key == self._key:
            return False
        self._key = key
        self._engine, self._engine_key, self._failure = None, None, None
        return True

    @property
    def engine(self) -> Engine | None:
        return self._engine if self._engine_key == self._key else None

    def failed(self) -> DiffucodeError | None:
        """The load error for the current model, if its last load failed."""
        return self._failure[1] if self._failure and self._failure[0] == self._key else None

    async def get_engine(self,
                         announce: Callable[[str], contextlib.AbstractAsyncContextManager] | None = None) -> Engine:
        """The engine for the current settings, loading it on the inference thread if needed.

        Concurrent callers share one load. `announce(name)` wraps the load (progress, messages).
        Raises CheckpointError (any loader failure is reported as one)."""
        key = self._key
        if self._engine is not None and self._engine_key == key:
            return self._engine
        if self._load_task is None or self._load_task_key != key or self._load_task.done():
            self._load_task = asyncio.ensure_future(self._load(key, announce))
            self._load_task_key = key
            # Callers may all be gone (cancelled) when a load fails: mark its error as seen.
            self._load_task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return await asyncio.shield(self._load_task)

    async def _load(self, key, announce) -> Engine:
        model, device, options = key
        name = model or "the embedded model"
        loop = asyncio.get_running_loop()
        async with announce(name) if announce else _async_null():
            t0 = time.perf_counter()
            try:
                engine = await loop.run_in_executor(self._pool, lambda: self._loader(model, device, **dict(options)))
            except DiffucodeError as exc:
                self._failure = (key, exc)
                raise
            except Exception as exc:  # torch/OS errors: the server must stay up and say why
                err = CheckpointError(f"cannot load {name}: {type(exc).__name__}: {exc}")
                self._failure = (key, err)
                raise err from exc
            log.info("loaded %s on %s in %.2f s", name, device, time.perf_counter() - t0)
        if self._key == key:  # settings may have changed while loading
            self._engine, self._engine_key, self._failure = engine, key, None
        return engine

    # -- jobs ---------------------------------------------------------------------------------------
    async def run(self, job: Job, fn: Callable[[], object]):
        """Run fn() on the inference thread. Cancelling the awaiting task cancels the job.

        Raises GenerationCancelled when the job was cancelled before or while it ran."""
        stats = self.stats

        def call():
            if job.cancelled:
                raise GenerationCancelled(job.reason or "cancelled")
            stats.running = job.kind
            try:
                return fn()
            finally:
                stats.running = None

        stats.pending += 1
        fut = self._pool.submit(call)
        try:
            result = await asyncio.wrap_future(fut)
        except asyncio.CancelledError:
            job.cancel("request cancelled")
            fut.cancel()  # dropped if still queued; else the sampler stops at its next step
            stats.cancelled += 1
            raise
        except GenerationCancelled:
            stats.cancelled += 1
            raise
        except BaseException:
            stats.failed += 1
            raise
        finally:
            stats.pending -= 1
        stats.done += 1
        stats.forwards += getattr(result, "forwards", 0)
        return result

    def set_threads(self, n: int) -> None:
        """torch's CPU threads, set on the inference thread itself (OpenMP keeps the count per thread)."""

        def apply():
            import torch

            if torch.get_num_threads() != n:
                torch.set_num_threads(n)

        self._pool.submit(apply)  # runs before any job submitted after it

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


@contextlib.asynccontextmanager
async def _async_null():
    yield


def rss_bytes() -> int:
    """Resident memory of this process (Linux /proc; elsewhere the peak from getrusage)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
