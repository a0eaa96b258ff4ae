"""Work-done progress ($/progress) and the diffucode/denoiseStep stream of a selection job."""

from __future__ import annotations

import asyncio
import logging
import uuid

from lsprotocol import types as lsp

from diffucode.infill import StepUpdate
from diffucode_lsp import protocol as P
from diffucode_lsp.worker import Job

log = logging.getLogger(__name__)
CLIENT_TIMEOUT = 5.0  # seconds to wait for the client's answer to a bookkeeping request


class Progress:
    """One work-done progress ($/progress): server-created unless the client passed a token."""

    def __init__(self, ls, token: lsp.ProgressToken):
        self.ls, self.token, self.percentage = ls, token, 0

    @classmethod
    async def start(cls, ls, token, title: str, message: str, *, cancellable: bool = True,
                    on_cancel=None) -> "Progress | None":
        wdp = ls.work_done_progress
        if token is None:
            caps = ls.client_capabilities
            if not (caps and caps.window and caps.window.work_done_progress):
                return None
            token = f"diffucode-{uuid.uuid4().hex[:12]}"
            try:
                await asyncio.wait_for(wdp.create_async(token), CLIENT_TIMEOUT)
            except Exception as exc:  # the client said no (or nothing): work without progress
                log.info("progress create refused: %s", exc)
                return None
        wdp.begin(token, lsp.WorkDoneProgressBegin(title=title, message=message, cancellable=cancellable, percentage=0))
        fut = wdp.tokens.get(token)
        if fut is not None and on_cancel is not None:
            fut.add_done_callback(lambda f: on_cancel() if f.cancelled() else None)
        return cls(ls, token)

    def report(self, message: str, percentage: int) -> None:
        self.percentage = max(self.percentage, min(99, percentage))  # steadily rising, per the spec
        self.ls.work_done_progress.report(self.token,
                                          lsp.WorkDoneProgressReport(message=message, percentage=self.percentage))

    def end(self, message: str) -> None:
        self.ls.work_done_progress.end(self.token, lsp.WorkDoneProgressEnd(message=message))
        self.ls.work_done_progress.tokens.pop(self.token, None)


class Stream:
    """Turns the sampler's step updates into $/progress reports and diffucode/denoiseStep notifications."""

    def __init__(self, ls, job: Job, progress: Progress | None, uri: str, version: int, rng: lsp.Range):
        self.ls, self.job, self.progress = ls, job, progress
        self.base = {"uri": uri, "version": version, "jobId": job.id, "mode": job.kind,
                     "range": ls.protocol._converter.unstructure(rng)}
        self.total = 1

    def step(self, u: StepUpdate) -> None:  # on the event loop
        if self.job.cancelled:
            return
        self.total = max(self.total, u.masked_left + u.forwards)
        if self.progress:
            self.progress.report(f"step {u.forwards}, {u.masked_left} masked",
                                 int(100 * (1 - u.masked_left / self.total)))
        if self.ls.settings.stream:
            self.ls.protocol.notify(P.DENOISE_STEP, {**self.base, "step": u.forwards, "maskedLeft": u.masked_left,
                                                     "texts": list(u.texts)})
