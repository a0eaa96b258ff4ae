"""The diffucode language server (pygls 2): inline completion, selection infill / rewrite / repair.

Every handler is a small coroutine on the event loop; generation runs on the Worker's single thread
and is cancelled through a `Job` (a newer inline request for the same document, `$/cancelRequest`,
a cancelled `$/progress`, a closed document). Edits leave the server only as `TextDocumentEdit`s that
carry the document version the job started from, and only if that version is still current.

Custom protocol (docs/lsp.md): request `diffucode/infill`, request `diffucode/status`,
notification `diffucode/denoiseStep`; commands `diffucode.{infill,rewrite,repair}Selection`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp
from pygls.exceptions import FeatureRequestError, JsonRpcException, JsonRpcParseError, JsonRpcRequestCancelled
from pygls import uris
from pygls.lsp.server import LanguageServer
from pygls.workspace import TextDocument

from diffucode.cli import version
from diffucode.errors import ConfigError, DiffucodeError, GenerationCancelled, SpanError
from diffucode.infill import InfillResult, rewrite
from diffucode.instruct import instruct
from diffucode.loading import is_interim
from diffucode.refine import complete_in_context, infill_in_context
from diffucode_lsp import protocol as P
from diffucode_lsp.contexts import Contexts
from diffucode_lsp.documents import LspTextDocument, Window, adopt, check_text, range_at, single_line_edit, span_at
from diffucode_lsp.progress import CLIENT_TIMEOUT, Progress, Stream
from diffucode_lsp.settings import ServerSettings, generation_overrides, merge
from diffucode_lsp.worker import Job, Loader, Worker, rss_bytes

log = logging.getLogger(__name__)
EMPTY = lsp.InlineCompletionList(items=[])


def auto_threads() -> int:
    """Half the cores, at least one: the editor keeps the rest, and torch's thread team does not fight
    the event loop (on a busy 2-core VM, 2 threads made a tiny model 12x slower than 1)."""
    return max(1, (os.cpu_count() or 2) // 2)


class DiffucodeServer(LanguageServer):
    """The pygls server with diffucode's state: settings, the model worker and the live jobs per document."""

    _reporting = False  # true while report_server_error reports: a report that fails must not report itself

    def __init__(self, loader: Loader | None = None, defaults: ServerSettings | None = None):
        """`loader` loads the model (default: models.load_engine); `defaults`: the settings before the client's."""
        super().__init__("diffucode", version(), protocol_cls=P.DiffucodeProtocol,
                         converter_factory=P.converter_factory)
        self.settings = defaults or ServerSettings()
        self.worker = Worker(loader)
        self.worker.configure(self.settings.model, self.settings.device, **self.settings.load_options())
        self.inline_jobs: dict[str, Job] = {}  # the live inline job per document
        self.jobs: dict[str, set[Job]] = {}  # every live job per document
        self.background: set[asyncio.Task] = set()  # command jobs (code actions)
        self.contexts = Contexts()  # repository context per workspace folder (indexed in the background)

    # -- documents and settings ---------------------------------------------------------------------
    def open_doc(self, uri: str) -> TextDocument | None:
        """An open document, or None (pygls would otherwise read unknown URIs from disk)."""
        try:
            return self.workspace.text_documents.get(uri) or self.workspace.text_documents.get(_unquote(uri))
        except RuntimeError:  # before initialize
            return None

    def path_of(self, doc: TextDocument) -> Path | None:
        """The document's file path (None for an unsaved buffer or another scheme)."""
        return Path(doc.path).resolve() if doc.uri.startswith("file:") and doc.path else None

    def drafts_for(self, doc: TextDocument, src: str, win: Window, settings):
        """The drafts callback of a job on `doc` (None with context off)."""
        return self.contexts.drafts_for(self.path_of(doc), src, win.base, settings)

    def language_of(self, doc: TextDocument) -> str | None:
        """The document's language: from its file name, else the client's languageId (None if neither)."""
        from diffucode.syntax import language_for_path

        return language_for_path(doc.path or "") or (doc.language_id or None)

    def apply_settings(self, raw: Any, where: str) -> None:
        """Merge the client's `raw` settings (from `where`) into the current ones and reconfigure the worker;
        invalid settings are shown as an error and leave everything unchanged."""
        try:
            new, warnings = merge(self.settings, raw)
        except ConfigError as exc:
            self.show(lsp.MessageType.Error, f"diffucode: {where}: {exc}; settings unchanged")
            return
        for w in warnings:
            self.log_msg(lsp.MessageType.Warning, f"diffucode: {where}: {w}")
        self.settings = new
        self.worker.set_threads(new.threads or auto_threads())
        if self.worker.configure(new.model, new.device, **new.load_options()):
            model = new.model or "the embedded model"
            self.log_msg(lsp.MessageType.Info, f"diffucode: model set to {model} on {new.device}")

    def show(self, kind: lsp.MessageType, text: str) -> None:
        """window/showMessage (a popup in the editor), also written to the server's log."""
        log.log(logging.ERROR if kind == lsp.MessageType.Error else logging.INFO, text)
        self.window_show_message(lsp.ShowMessageParams(type=kind, message=text))

    def log_msg(self, kind: lsp.MessageType, text: str) -> None:
        """window/logMessage (the editor's output panel), also written to the server's log."""
        log.info(text)
        self.window_log_message(lsp.LogMessageParams(type=kind, message=text))

    def report_server_error(self, error: Exception, source) -> None:
        """pygls' hook for errors outside a handler's reply: logged (window/logMessage), never a popup;
        an undecodable message is answered with a JSON-RPC parse error."""
        # Request errors are in the response already; out-of-band ones (undecodable messages, failing
        # notifications) go to the log, not a popup.
        if source is FeatureRequestError:
            log.info("request failed: %s", error)
            return
        log.error("%s: %s", getattr(source, "__name__", source), error)
        if isinstance(error, (json.JSONDecodeError, UnicodeDecodeError)):  # JSON-RPC: a parse error is answered
            with contextlib.suppress(Exception):  # raw: the converter would drop the id, which must be null
                self.protocol._send_data({"jsonrpc": "2.0", "id": None,
                                          "error": {"code": JsonRpcParseError.CODE,
                                                    "message": f"parse error: {error}"}})
        if self._reporting:  # the report itself failed (e.g. stdout closed by exit): stop here
            return
        self._reporting = True
        try:
            with contextlib.suppress(Exception):
                self.window_log_message(lsp.LogMessageParams(type=lsp.MessageType.Error,
                                                             message=f"diffucode: {error}"))
        finally:
            self._reporting = False

    # -- jobs ---------------------------------------------------------------------------------------
    def track(self, job: Job) -> None:
        """Register a live job; a new inline job cancels the document's previous one."""
        self.jobs.setdefault(job.uri, set()).add(job)
        if job.kind == "inline":
            old = self.inline_jobs.get(job.uri)
            if old is not None:
                old.cancel("superseded by a newer request")
            self.inline_jobs[job.uri] = job

    def forget(self, job: Job) -> None:
        """Unregister a finished job."""
        live = self.jobs.get(job.uri)
        if live is not None:
            live.discard(job)
            if not live:
                del self.jobs[job.uri]
        if self.inline_jobs.get(job.uri) is job:
            del self.inline_jobs[job.uri]

    def cancel_jobs(self, uri: str | None, reason: str, *, inline_only: bool = False) -> None:
        """Cancel the live jobs of document `uri` (None: of every document), or only its inline ones."""
        for u, live in list(self.jobs.items()):
            if uri is None or u == uri:
                for job in list(live):
                    if not inline_only or job.kind == "inline":
                        job.cancel(reason)

    def shutdown(self) -> None:
        """Cancel every job, stop the worker, then shut pygls down."""
        self.cancel_jobs(None, "server shutting down")
        self.worker.shutdown()
        super().shutdown()

    async def engine(self, *, retry_failed: bool = True):
        """The loaded model, loading it first (with $/progress) if needed. Raises the load's DiffucodeError;
        with retry_failed=False a model that already failed to load is not tried again."""
        failure = self.worker.failed()
        if failure is not None and not retry_failed:
            raise failure
        return await self.worker.get_engine(self._announce_load)

    @contextlib.asynccontextmanager
    async def _announce_load(self, name: str):
        """Around a model load: $/progress and log messages, and an error popup when it fails."""
        progress = await Progress.start(self, None, "diffucode: loading model", name, cancellable=False)
        self.log_msg(lsp.MessageType.Info, f"diffucode: loading {name}")
        loaded = False
        try:
            yield
            loaded = True
        except DiffucodeError as exc:
            self.show(lsp.MessageType.Error, f"diffucode: cannot load the model: {exc}")
            raise
        finally:
            if progress:
                progress.end("loaded" if loaded else "failed")
        self.log_msg(lsp.MessageType.Info, f"diffucode: loaded {name}")

    # -- inline completion --------------------------------------------------------------------------
    async def inline_completion(self, params: lsp.InlineCompletionParams) -> lsp.InlineCompletionList | None:
        """textDocument/inlineCompletion: the valid single-line completions at the cursor, after the debounce.
        None when inline completion is off or the document unknown; empty when superseded, edited or failed."""
        uri = params.text_document.uri
        doc = self.open_doc(uri)
        if doc is None or not self.settings.inline_enabled:
            return None
        version0 = doc.version
        job = Job(uri, "inline")
        self.track(job)  # cancels the previous inline job for this document
        try:
            invoked = (params.context is not None
                       and params.context.trigger_kind == lsp.InlineCompletionTriggerKind.Invoked)
            if self.settings.debounce_ms and not invoked:  # an explicit request is not typing: no wait
                await asyncio.sleep(self.settings.debounce_ms / 1000)
            if job.cancelled or self.open_doc(uri) is not doc or doc.version != version0:
                return EMPTY
            try:
                src = check_text(doc, self.settings.max_file_chars)
                cursor = span_at(doc, lsp.Range(start=params.position, end=params.position))[0]
                settings = self.settings.infill_settings(self.language_of(doc), inline=True)
                engine = await self.engine(retry_failed=False)
            except DiffucodeError as exc:
                log.info("inline completion at %s:%s unavailable: %s", uri, params.position, exc)
                return EMPTY
            win = Window.around(src, cursor, cursor, self.settings.window_chars)
            drafts = self.drafts_for(doc, src, win, settings)
            result = await self.worker.run(
                job,
                lambda: complete_in_context(engine, win.text, cursor - win.base, settings, drafts,
                                            should_stop=job.cancel_event.is_set),
            )
        except GenerationCancelled:
            return EMPTY
        except asyncio.CancelledError:
            job.cancel("request cancelled")
            raise
        except DiffucodeError as exc:
            log.info("inline completion failed: %s", exc)
            return EMPTY
        except Exception:  # a bug must cost one completion, not the editor's patience
            log.exception("inline completion failed")
            return EMPTY
        finally:
            self.forget(job)
        if self.open_doc(uri) is not doc or doc.version != version0:
            return EMPTY  # typed meanwhile: this text no longer fits
        return lsp.InlineCompletionList(items=self._inline_items(doc, src, win, result))

    def _inline_items(self, doc: TextDocument, src: str, win: Window,
                      result: InfillResult) -> list[lsp.InlineCompletionItem]:
        """The valid, non-blank candidates as inline items, each fitted to one line, without duplicates."""
        items, seen = [], set()
        for cand in result.candidates:
            if not cand.valid or len(cand.edits) != 1:
                continue
            ed = cand.edits[0]
            if not ed.text.strip():
                continue
            fitted = single_line_edit(src, ed.start + win.base, ed.end + win.base, ed.text)
            if fitted is None or (fitted[2], fitted[0], fitted[1]) in seen:
                continue
            seen.add((fitted[2], fitted[0], fitted[1]))
            s, e, text = fitted
            items.append(lsp.InlineCompletionItem(insert_text=text, range=range_at(doc, s, e)))
        return items

    # -- selection jobs (code actions, diffucode/infill) ----------------------------------------------
    async def edit_job(
        self,
        uri: str,
        rng: lsp.Range,
        mode: str,
        options: dict | None = None,
        *,
        expected_version: int | None = None,
        apply: bool = False,
        token: lsp.ProgressToken | None = None,
        instruction: str | None = None,
    ) -> dict:
        """Infill / rewrite / repair / instruct `rng`; the reply carries the candidates and a versioned edit.

        With apply=True the best edit is sent through workspace/applyEdit, unless the document
        changed meanwhile (then `applied` is false and `failureReason` says why)."""
        doc = self.open_doc(uri)
        if doc is None:
            raise P.request_failed(f"unknown document {uri}: it is not open")
        if expected_version is not None and doc.version != expected_version:
            raise P.content_modified(f"document is at version {doc.version}, not {expected_version}")
        edit = self._edit_request(uri, doc, rng, mode, options, instruction)
        result = await self._generate(edit, token)
        reply = self._reply(edit.snapshot, edit.win, result, mode)
        if apply:
            if reply["edit"] is None:
                reply["applied"], reply["failureReason"] = False, reply["refused"] or "no valid candidate"
            else:
                reply["applied"], reply["failureReason"] = await self.apply_edit(
                    uri, edit.snapshot.version, reply["edit"], mode, doc)
        return reply

    def _edit_request(self, uri: str, doc: TextDocument, rng: lsp.Range, mode: str, options: dict | None,
                      instruction: str | None) -> _EditRequest:
        """The job's inputs, read from `doc` now: its text, the range (snapped for infill) and the settings.
        Raises InvalidParams (bad range, options or snap) or RequestFailed."""
        try:
            src = check_text(doc, self.settings.max_file_chars)
            start, end = span_at(doc, rng)
            overrides = generation_overrides({k: v for k, v in (options or {}).items() if k != "snap"},
                                             where="options")
            settings = self.settings.infill_settings(self.language_of(doc), overrides)
        except (SpanError, ConfigError) as exc:
            raise P.invalid_params(str(exc)) from exc
        except DiffucodeError as exc:
            raise P.request_failed(str(exc)) from exc
        snapshot = LspTextDocument(uri, source=src, version=doc.version, position_codec=doc.position_codec)
        if mode in ("rewrite", "repair") and start == end:
            raise P.invalid_params(f"{mode} needs a non-empty range")
        if mode == "infill" and (options or {}).get("snap", self.settings.snap_selection):
            start, end = _snap_selection(src, start, end, settings.language)
        win = Window.around(src, start, end, self.settings.window_chars)
        drafts = self.drafts_for(doc, src, win, settings) if mode == "infill" else None
        return _EditRequest(mode, snapshot, win, start, end, settings, instruction, drafts)

    async def _generate(self, edit: _EditRequest, token: lsp.ProgressToken | None) -> InfillResult:
        """Run the job on the worker, reporting through $/progress (cancellable) and step streaming.
        Raises RequestCancelled when the job is cancelled, RequestFailed when it fails."""
        uri, mode = edit.snapshot.uri, edit.mode
        job = Job(uri, mode)
        self.track(job)
        loop = asyncio.get_running_loop()
        progress = None
        try:
            progress = await Progress.start(self, token, f"diffucode: {mode}", "waiting for the model",
                                            on_cancel=lambda: job.cancel("cancelled from the progress UI"))
            try:
                engine = await self.engine()
            except DiffucodeError as exc:
                raise P.request_failed(str(exc)) from exc
            stream = None
            if progress or self.settings.stream:
                where = range_at(edit.snapshot, edit.start, edit.end)
                stream = Stream(self, job, progress, uri, edit.snapshot.version, where)
            on_step = (lambda u: loop.call_soon_threadsafe(stream.step, u)) if stream else None
            stop = job.cancel_event.is_set
            st = self.settings
            try:
                return await self.worker.run(job, lambda: _run_edit(engine, edit, st, on_step, stop))
            except GenerationCancelled as exc:
                if self.open_doc(uri) is None:
                    raise P.request_failed("the document was closed while generating") from exc
                raise JsonRpcRequestCancelled(f"cancelled: {job.reason or exc}") from exc
            except DiffucodeError as exc:
                raise P.request_failed(str(exc)) from exc
        finally:
            self.forget(job)
            if progress:
                progress.end("cancelled" if job.cancelled else "done")

    def _reply(self, snapshot: TextDocument, win: Window, result: InfillResult, mode: str) -> dict:
        """The diffucode/infill reply (docs/lsp.md): candidates, the best valid one as a versioned edit, stats."""
        conv = self.protocol._converter
        cands = []
        for c in result.candidates:
            edits = [lsp.TextEdit(range=range_at(snapshot, ed.start + win.base, ed.end + win.base), new_text=ed.text)
                     for ed in c.edits]
            cands.append({"text": c.edits[0].text if c.edits else "", "edits": conv.unstructure(edits),
                          "score": c.score, "valid": c.valid, "reason": c.reason, "nTokens": c.n_tokens,
                          "_edits": edits})
        best = next((c for c in cands if c["valid"]), None)
        edit = None
        if best is not None:
            edit = lsp.WorkspaceEdit(document_changes=[lsp.TextDocumentEdit(
                text_document=lsp.OptionalVersionedTextDocumentIdentifier(uri=snapshot.uri, version=snapshot.version),
                edits=best["_edits"])])
        for c in cands:
            del c["_edits"]
        return {"mode": mode, "uri": snapshot.uri, "version": snapshot.version, "candidates": cands,
                "edit": conv.unstructure(edit) if edit else None, "applied": None, "failureReason": None,
                "forwards": result.forwards, "elapsedMs": round(result.elapsed_ms, 1), "invalid": result.n_invalid,
                "refused": result.refused}

    async def apply_edit(self, uri: str, version0: int, edit: dict, mode: str,
                         doc0: TextDocument) -> tuple[bool, str | None]:
        """Send a versioned edit, unless the document moved on since `version0` (then refuse it here).
        `doc0` is the document the job read: one closed and reopened is another object (its versions restart)."""
        doc = self.open_doc(uri)
        if doc is None or doc is not doc0:
            return False, "the document was closed while generating"
        if doc.version != version0:
            return False, (f"the document changed while generating (version {version0} → {doc.version}); "
                           "edit discarded")
        ws_edit = self.protocol._converter.structure(edit, lsp.WorkspaceEdit)
        try:
            params = lsp.ApplyWorkspaceEditParams(edit=ws_edit, label=f"diffucode: {mode}")
            res = await asyncio.wait_for(self.workspace_apply_edit_async(params), 60)
        except JsonRpcException as exc:
            return False, f"the client refused the edit: {exc}"
        except asyncio.TimeoutError:
            return False, "the client did not answer workspace/applyEdit within 60 s"
        return bool(res.applied), res.failure_reason

    def spawn_command_job(self, mode: str, arg: Any) -> dict:
        """A code action's command: start the job in the background and answer at once.

        The job reports through $/progress (cancellable) and ends in workspace/applyEdit."""
        try:
            uri, rng, version = P.command_target(arg, self.protocol._converter)
        except Exception as exc:  # KeyError, TypeError, cattrs validation errors
            raise P.invalid_params(f"expected [{{uri, range, version}}]: {exc}") from exc

        async def go():
            """Run the job and apply its edit; a failure or an empty fill is shown as a warning."""
            try:
                reply = await self.edit_job(uri, rng, mode, expected_version=version, apply=True)
            except JsonRpcRequestCancelled:
                return
            except JsonRpcException as exc:
                self.show(lsp.MessageType.Warning, f"diffucode: {mode} failed: {exc.message}")
                return
            if not reply["applied"]:  # a refused result names why (guard.py) and that nothing was applied
                self.show(lsp.MessageType.Warning,
                          f"diffucode: {mode}: {reply['failureReason'] or 'edit not applied'}"
                          + ("; nothing was applied (setting diffucode.allowDelete accepts it)"
                             if reply["refused"] else ""))
            elif rng.start != rng.end and not any(c["text"].strip() for c in reply["candidates"] if c["valid"]):
                model = self.worker.engine
                why = (" (the embedded model is an interim model that usually leaves holes empty; set diffucode.model "
                       "for a stronger one)") if model is not None and is_interim(model.path) else ""
                self.show(lsp.MessageType.Warning,
                          f"diffucode: {mode}: the model filled the selection with nothing{why}")

        task = asyncio.ensure_future(go())
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return {"started": True}

    def status(self) -> dict:
        """The diffucode/status reply: version, model and its load, job counts, open documents, memory, settings."""
        eng = self.worker.engine
        failure = self.worker.failed()
        return {
            "version": self.version,
            "model": self.settings.model or "default",
            "device": self.settings.device,
            "loaded": eng is not None,
            "loadSeconds": round(eng.load_seconds, 3) if eng else None,
            "runtime": eng.runtime if eng else None,  # load-time choices, e.g. quantize "auto"'s measurement
            "loadError": str(failure) if failure else None,
            "jobs": dataclasses.asdict(self.worker.stats),
            "liveJobs": sum(len(v) for v in self.jobs.values()),
            "openDocuments": len(self.workspace.text_documents) if self.protocol._workspace else 0,
            "rssBytes": rss_bytes(),
            "context": self.contexts.status(),
            "settings": self.settings.to_json(),
        }


def _unquote(uri: str) -> str:
    """`uri` with its %-escapes decoded: the second key open_doc looks a document up by."""
    from urllib.parse import unquote

    return unquote(uri)


@dataclasses.dataclass(frozen=True)
class _EditRequest:
    """A selection job's inputs, fixed when it starts."""

    mode: str  # infill, rewrite, repair or instruct
    snapshot: TextDocument  # the text the job reads, at the version it read
    win: Window  # the part of it the model sees
    start: int  # the range to regenerate (snapped for infill), str offsets into the document
    end: int
    settings: Any  # diffucode.infill.InfillSettings
    instruction: str | None
    drafts_for: Any = None  # infill: retrieved drafts of the span (lsp/contexts.py), or None


def _snap_selection(src: str, start: int, end: int, language: str | None) -> tuple[int, int]:
    """The infill range snapped to syntax; raises InvalidParams when it cannot snap or would grow too far."""
    from diffucode import guard, syntax

    try:
        snapped = syntax.snap(src, start, end, language=language)
    except DiffucodeError as exc:
        raise P.invalid_params(f"cannot snap the range: {exc}") from exc
    too_far = guard.snap_growth(src, (start, end), (snapped.start, snapped.end))
    if too_far:
        raise P.invalid_params(too_far.removeprefix(guard.REFUSED))
    return snapped.start, snapped.end


def _run_edit(engine, edit: _EditRequest, st: ServerSettings, on_step, stop) -> InfillResult:
    """The generation itself, on the worker's thread: infill, instruct, rewrite or repair the window."""
    text, settings = edit.win.text, edit.settings
    span = (edit.start - edit.win.base, edit.end - edit.win.base)
    if edit.mode == "infill":
        return infill_in_context(engine, text, [span], settings, edit.drafts_for, on_step=on_step, should_stop=stop)
    if edit.mode == "instruct":
        return instruct(engine, text, span, edit.instruction, settings, on_step=on_step, should_stop=stop)
    if edit.mode == "rewrite":
        return rewrite(engine, text, span, settings, fraction=st.rewrite_fraction, on_step=on_step,
                       should_stop=stop)
    return rewrite(engine, text, span, settings, fraction=None, below=st.repair_below, on_step=on_step,
                   should_stop=stop)


# -- registration -----------------------------------------------------------------------------------
def build_server(loader: Loader | None = None, defaults: ServerSettings | None = None) -> DiffucodeServer:
    """A DiffucodeServer with every LSP method, command and custom request registered (not yet started)."""
    server = DiffucodeServer(loader, defaults)
    _register_lifecycle(server)
    _register_documents(server)
    _register_commands(server)
    _register_requests(server)
    return server


def _register_lifecycle(server: DiffucodeServer) -> None:
    """initialize, initialized, workspace/didChangeConfiguration and shutdown."""

    @server.feature(lsp.INITIALIZE)
    def on_initialize(ls: DiffucodeServer, params: lsp.InitializeParams):
        """initialize: adopt LSP line splitting and apply `initializationOptions`; pygls answers the capabilities."""
        adopt(ls.workspace)  # documents split lines where LSP does (documents.LspTextDocument)
        ls.apply_settings(params.initialization_options, "initializationOptions")
        folders = [f.uri for f in params.workspace_folders or []] or [u for u in [params.root_uri] if u]
        ls.contexts.set_folders([Path(uris.to_fs_path(u)) for u in folders if u.startswith("file:")])

    @server.feature(lsp.INITIALIZED)
    def on_initialized(ls: DiffucodeServer, params: lsp.InitializedParams):
        """initialized: start loading the model in the background when `preload` is set. No reply."""
        _watch_files(ls)
        if ls.settings.preload:

            async def preload():
                """Load the model now; a failure is shown by the load itself (_announce_load)."""
                with contextlib.suppress(DiffucodeError):
                    await ls.engine()

            task = asyncio.ensure_future(preload())
            ls.background.add(task)
            task.add_done_callback(ls.background.discard)

    @server.feature(lsp.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def on_configuration(ls: DiffucodeServer, params: lsp.DidChangeConfigurationParams):
        """workspace/didChangeConfiguration: apply the pushed settings, or pull the `diffucode` section
        through workspace/configuration when the push is empty. No reply."""
        raw = params.settings
        caps = ls.client_capabilities
        if not raw and caps and caps.workspace and caps.workspace.configuration:
            try:
                items = [lsp.ConfigurationItem(section="diffucode")]
                got = await asyncio.wait_for(
                    ls.workspace_configuration_async(lsp.ConfigurationParams(items=items)), CLIENT_TIMEOUT
                )
                raw = got[0] if got else None
            except (JsonRpcException, asyncio.TimeoutError) as exc:
                log.info("workspace/configuration failed: %s", exc)
        ls.apply_settings(raw, "settings")

    @server.feature(lsp.SHUTDOWN)
    def on_shutdown(ls: DiffucodeServer, params: None):
        """shutdown: cancel every live job; replies null."""
        ls.cancel_jobs(None, "server shutting down")


def _watch_files(ls: DiffucodeServer) -> None:
    """Ask the client to report file changes on disk (workspace/didChangeWatchedFiles), when it can."""
    caps = ls.client_capabilities
    ws = caps.workspace if caps else None
    if not (ws and ws.did_change_watched_files and ws.did_change_watched_files.dynamic_registration):
        return
    opts = lsp.DidChangeWatchedFilesRegistrationOptions(watchers=[lsp.FileSystemWatcher(glob_pattern="**/*")])
    reg = lsp.Registration(id="diffucode-watch", method=lsp.WORKSPACE_DID_CHANGE_WATCHED_FILES, register_options=opts)
    task = asyncio.ensure_future(ls.client_register_capability_async(lsp.RegistrationParams(registrations=[reg])))
    ls.background.add(task)
    task.add_done_callback(ls.background.discard)


def _register_documents(server: DiffucodeServer) -> None:
    """didChange, didClose and didSave of documents, changed files and workspace folders (pygls keeps the
    text; these cancel jobs and keep the repository index current)."""

    @server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
    def on_change(ls: DiffucodeServer, params: lsp.DidChangeTextDocumentParams):
        """textDocument/didChange: cancel the document's inline job (its text no longer fits). No reply."""
        ls.cancel_jobs(params.text_document.uri, "document changed", inline_only=True)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
    def on_close(ls: DiffucodeServer, params: lsp.DidCloseTextDocumentParams):
        """textDocument/didClose: cancel every job on the document; its file on disk counts again. No reply."""
        ls.cancel_jobs(params.text_document.uri, "document closed")
        _disk_changed(ls, params.text_document.uri)

    @server.feature(lsp.TEXT_DOCUMENT_DID_SAVE)
    def on_save(ls: DiffucodeServer, params: lsp.DidSaveTextDocumentParams):
        """textDocument/didSave: the saved text goes into the repository index. No reply."""
        doc = ls.open_doc(params.text_document.uri)
        path = ls.path_of(doc) if doc is not None else None
        if path is not None:
            ls.contexts.file_changed(path, doc.source)

    @server.feature(lsp.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def on_watched(ls: DiffucodeServer, params: lsp.DidChangeWatchedFilesParams):
        """workspace/didChangeWatchedFiles: files created, changed or deleted outside the editor. No reply."""
        for change in params.changes:
            _disk_changed(ls, change.uri, deleted=change.type == lsp.FileChangeType.Deleted)

    @server.feature(lsp.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)
    def on_folders(ls: DiffucodeServer, params: lsp.DidChangeWorkspaceFoldersParams):
        """workspace/didChangeWorkspaceFolders: contexts follow the folders. No reply."""
        ls.contexts.set_folders([Path(uris.to_fs_path(f.uri)) for f in ls.workspace.folders.values()
                                 if f.uri.startswith("file:")])


def _disk_changed(ls: DiffucodeServer, uri: str, *, deleted: bool = False) -> None:
    """The file at `uri` as it is on disk now goes into the repository index (an open document keeps its text)."""
    if not uri.startswith("file:") or ls.open_doc(uri) is not None:
        return
    path = Path(uris.to_fs_path(uri))
    text = None
    if not deleted:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            text = None
    ls.contexts.file_changed(path, text)


def _register_commands(server: DiffucodeServer) -> None:
    """The code actions and their commands diffucode.{infill,rewrite,repair}Selection."""

    @server.feature(lsp.TEXT_DOCUMENT_CODE_ACTION,
                    lsp.CodeActionOptions(code_action_kinds=[lsp.CodeActionKind.RefactorRewrite]))
    def on_code_action(ls: DiffucodeServer, params: lsp.CodeActionParams):
        """textDocument/codeAction: the infill / rewrite / repair actions for a non-empty selection."""
        return code_actions(ls, params)

    for command, mode in P.MODES.items():

        def make(mode=mode):
            """The command handler for `mode` (a default argument: each closure keeps its own mode)."""

            async def run_command(ls: DiffucodeServer, *args):
                """workspace/executeCommand: start the selection job; replies {"started": true} at once."""
                if len(args) != 1:
                    raise P.invalid_params(f"expected one argument {{uri, range, version}}, got {len(args)}")
                return ls.spawn_command_job(mode, args[0])

            return run_command

        server.command(command)(make())


def _register_requests(server: DiffucodeServer) -> None:
    """textDocument/inlineCompletion and the custom requests diffucode/infill and diffucode/status."""

    @server.feature(lsp.TEXT_DOCUMENT_INLINE_COMPLETION, lsp.InlineCompletionOptions())
    async def on_inline(ls: DiffucodeServer, params: lsp.InlineCompletionParams):
        """textDocument/inlineCompletion: completions at the cursor (see DiffucodeServer.inline_completion)."""
        return await ls.inline_completion(params)

    @server.feature(P.INFILL)
    async def on_infill(ls: DiffucodeServer, params: Any):
        """diffucode/infill: run a selection job and reply with its candidates and versioned edit (edit_job)."""
        uri, rng, mode, options, version, apply, token, instruction = P.infill_params(params, ls.protocol._converter)
        return await ls.edit_job(uri, rng, mode, options, expected_version=version, apply=apply, token=token,
                                 instruction=instruction)

    @server.feature(P.STATUS)
    def on_status(ls: DiffucodeServer, params: Any):
        """diffucode/status: the server's state (model, load, jobs, memory, settings) as a dict."""
        return ls.status()


def code_actions(ls: DiffucodeServer, params: lsp.CodeActionParams) -> list[lsp.CodeAction]:
    """textDocument/codeAction: infill / rewrite / repair the selection, as refactor.rewrite actions whose
    commands carry {uri, range, version}; none for an empty selection or other requested kinds."""
    doc = ls.open_doc(params.text_document.uri)
    if doc is None:
        return []
    only = params.context.only if params.context else None
    kind = lsp.CodeActionKind.RefactorRewrite.value
    if only and not any(kind == k or kind.startswith(f"{k}.") for k in only):
        return []
    try:
        s, e = span_at(doc, params.range)
    except SpanError:
        return []
    if s == e:
        return []
    arg = {"uri": doc.uri, "range": ls.protocol._converter.unstructure(params.range), "version": doc.version}
    cmd = {v: k for k, v in P.MODES.items()}
    return [
        lsp.CodeAction(title=P.TITLES[m], kind=lsp.CodeActionKind.RefactorRewrite,
                       command=lsp.Command(title=P.TITLES[m], command=cmd[m], arguments=[arg]))
        for m in ("infill", "rewrite", "repair")
    ]
