"""End-to-end tests of the language server process (pytest-lsp), with a scripted denoiser.

The server runs tests/e2e/lsp_scripted.py: the real server and engine, but a denoiser that writes
SCRIPT into every hole (40 ms per forward), so texts, ranges and versions can be checked exactly and
long jobs can be cancelled mid-way. One server serves the whole module (a start costs ~3 s).
"""

from __future__ import annotations

import asyncio
import sys
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Union

import pytest
import pytest_lsp
from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcException
from pytest_lsp import ClientServerConfig, LanguageClient
from pytest_lsp.client import register_lsp_features

from diffucode_lsp.protocol import converter_factory

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = "total + 1"
# One token per forward (the server runs with exact: true): the scripted model commits its script's ~6 tokens,
# then a pad that fills the rest, so a LONG job makes ~7 forwards × 40 ms. Tests act on its first denoise step.
LONG = {"steps": 64, "lengthMode": "fixed", "length": 64, "maxNewTokens": 64}
pytestmark = pytest.mark.asyncio(loop_scope="module")


def capabilities() -> lsp.ClientCapabilities:
    return lsp.ClientCapabilities(
        window=lsp.WindowClientCapabilities(work_done_progress=True),
        workspace=lsp.WorkspaceClientCapabilities(apply_edit=True, configuration=False),
        text_document=lsp.TextDocumentClientCapabilities(inline_completion=lsp.InlineCompletionClientCapabilities()),
    )


def client_converter():
    """The server's converter (custom-method results stay plain dicts), plus a fix for lsprotocol
    2025.0, which decodes every CodeAction in a codeAction result as a Command."""
    conv = converter_factory()
    union = Union[lsp.Command, lsp.CodeAction]

    def command_or_action(obj, _):
        return conv.structure(obj, lsp.Command if isinstance(obj.get("command"), str) else lsp.CodeAction)

    conv.register_structure_hook_func(lambda t: t == union, command_or_action)
    return conv


def make_client() -> LanguageClient:
    client = LanguageClient(converter_factory=client_converter)
    register_lsp_features(client)
    return client


@pytest_lsp.fixture(
    scope="module",
    config=ClientServerConfig(
        server_command=[sys.executable, str(ROOT / "tests/e2e/lsp_scripted.py"), "--script", SCRIPT, "--delay", "0.04"],
        client_factory=make_client,
    ),
)
async def client(lsp_client: LanguageClient, tiny_model_dir):
    lsp_client.applied = []  # workspace/applyEdit requests the server sent
    lsp_client.steps = []  # (time, diffucode/denoiseStep params)

    @lsp_client.feature(lsp.WORKSPACE_APPLY_EDIT)
    def on_apply(params: lsp.ApplyWorkspaceEditParams):
        lsp_client.applied.append(params)
        return lsp.ApplyWorkspaceEditResult(applied=True)

    @lsp_client.feature("diffucode/denoiseStep")
    def on_step(params):
        lsp_client.steps.append((time.monotonic(), params))

    lsp_client.init_result = await lsp_client.initialize_session(
        lsp.InitializeParams(
            capabilities=capabilities(),
            # exact: one token per forward, so the scripted (fully confident) model's jobs last long enough
            # to watch their progress and cancel them; threshold decoding is tested in test_sampler.py.
            initialization_options={"model": str(tiny_model_dir), "debounceMs": 0, "maxNewTokens": 16, "exact": True},
        )
    )
    yield
    await lsp_client.shutdown_session()


_n = iter(range(10**6))


def open_doc(client: LanguageClient, text: str, name: str = "m.py", version: int = 1) -> str:
    uri = f"file:///tmp/diffucode-lsp/{next(_n)}/{name}"
    client.text_document_did_open(lsp.DidOpenTextDocumentParams(lsp.TextDocumentItem(uri=uri, language_id="python",
                                                                                     version=version, text=text)))
    return uri


def change(client: LanguageClient, uri: str, version: int, text: str) -> None:
    client.text_document_did_change(
        lsp.DidChangeTextDocumentParams(lsp.VersionedTextDocumentIdentifier(uri=uri, version=version),
                                        [lsp.TextDocumentContentChangeWholeDocument(text=text)])
    )


def rng(l1, c1, l2, c2) -> dict:
    return {"start": {"line": l1, "character": c1}, "end": {"line": l2, "character": c2}}


async def inline(client: LanguageClient, uri: str, line: int, character: int):
    return await asyncio.wait_for(
        client.text_document_inline_completion_async(
            lsp.InlineCompletionParams(
                context=lsp.InlineCompletionContext(trigger_kind=lsp.InlineCompletionTriggerKind.Automatic),
                text_document=lsp.TextDocumentIdentifier(uri=uri),
                position=lsp.Position(line=line, character=character),
            )
        ),
        30,
    )


def texts(result) -> list[str]:
    return [i.insert_text for i in result.items]


async def request(client: LanguageClient, method: str, params, msg_id=None):
    return await asyncio.wait_for(client.protocol.send_request_async(method, params, msg_id=msg_id), 30)


async def raw_request(client: LanguageClient, method: str, params):
    """Send params as given (the client's own types would refuse to encode malformed ones)."""
    msg_id = f"raw-{next(_n)}"
    fut = Future()
    client.protocol._request_futures[msg_id] = fut
    client.protocol._result_types[msg_id] = None
    message = {"jsonrpc": "2.0", "id": msg_id, "method": method}
    if params is not None:
        message["params"] = params
    client.protocol._send_data(message)
    return await asyncio.wait_for(asyncio.wrap_future(fut), 30)


async def status(client: LanguageClient) -> dict:
    return await request(client, "diffucode/status", {})


async def until(pred, timeout: float = 10.0, every: float = 0.02):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        await asyncio.sleep(every)
    return False


# -- capabilities and inline completion ---------------------------------------------------------------
async def test_capabilities_advertise_inline_completion_code_actions_and_commands(client: LanguageClient):
    caps = client.init_result.capabilities
    st = await status(client)
    assert st["settings"]["debounceMs"] == 0 and st["settings"]["maxNewTokens"] == 16
    assert caps.inline_completion_provider is not None
    assert caps.code_action_provider is not None
    assert set(caps.execute_command_provider.commands) >= {"diffucode.infillSelection", "diffucode.rewriteSelection",
                                                           "diffucode.repairSelection"}


async def test_the_model_loads_once_lazily_with_progress(client: LanguageClient):
    assert (await status(client))["loaded"] is False  # nothing asked for it yet
    uri = open_doc(client, "n = \n")
    first, second = await inline(client, uri, 0, 4), await inline(client, uri, 0, 4)
    assert texts(first) == texts(second) == [SCRIPT]
    loads = [v for v in client.progress_reports.values()
             if v and getattr(v[0], "title", "") == "diffucode: loading model"]
    assert len(loads) == 1 and type(loads[0][-1]).__name__ == "WorkDoneProgressEnd" and loads[0][-1].message == "loaded"
    st = await status(client)
    assert st["loaded"] is True and st["jobs"]["done"] == 2


async def test_inline_completion_after_emoji_and_cjk(client: LanguageClient):
    text = 'import math\nlabel = "😀漢" + \nprint(label)\n'
    uri = open_doc(client, text)
    col16 = len('label = "😀漢" + '.encode("utf-16-le")) // 2  # 16 UTF-16 units, 15 code points
    result = await inline(client, uri, 1, col16)
    assert result.items, result
    item = result.items[0]
    assert item.insert_text == SCRIPT
    assert item.range == lsp.Range(start=lsp.Position(line=1, character=col16),
                                   end=lsp.Position(line=1, character=col16))


async def test_inline_completion_keeps_text_after_the_cursor(client: LanguageClient):
    uri = open_doc(client, 'print("é😀", )\n')
    col16 = len('print("é😀", '.encode("utf-16-le")) // 2
    result = await inline(client, uri, 0, col16)
    assert texts(result) == [SCRIPT]
    r = result.items[0].range
    assert (r.start.character, r.end.character) == (col16, col16)  # the ")" after the cursor stays


async def test_inline_item_range_covers_the_rest_of_a_split_word(client: LanguageClient):
    uri = open_doc(client, "x = compute(1)\ny = 2\n")
    result = await inline(client, uri, 0, 7)  # x = com|pute(1): the hole is the rest of the line
    assert texts(result) == [SCRIPT]
    assert result.items[0].range == lsp.Range(start=lsp.Position(line=0, character=7),
                                              end=lsp.Position(line=0, character=14))


async def test_a_newer_inline_request_supersedes_the_older_one(client: LanguageClient):
    uri = open_doc(client, "x = 1\ny = \n")
    first = asyncio.ensure_future(inline(client, uri, 1, 4))
    await asyncio.sleep(0.01)
    second = asyncio.ensure_future(inline(client, uri, 1, 4))
    r1, r2 = await first, await second
    assert texts(r1) == []
    assert texts(r2) == [SCRIPT]


async def test_debounce_lets_only_the_last_of_a_burst_generate(client: LanguageClient):
    uri = open_doc(client, "total = \n")
    client.workspace_did_change_configuration(lsp.DidChangeConfigurationParams(settings={"debounceMs": 300}))
    try:
        st = await status(client)  # answered after the notification: messages are handled in order
        assert st["settings"]["debounceMs"] == 300
        done0 = st["jobs"]["done"]
        burst = []
        for _ in range(3):  # keystrokes 50 ms apart
            burst.append(asyncio.ensure_future(inline(client, uri, 0, 8)))
            await asyncio.sleep(0.05)
        results = [await r for r in burst]
        assert [texts(r) for r in results] == [[], [], [SCRIPT]]
        assert (await status(client))["jobs"]["done"] == done0 + 1  # the superseded ones never reached the model
        t0 = time.monotonic()
        invoked = await asyncio.wait_for(client.text_document_inline_completion_async(lsp.InlineCompletionParams(
            context=lsp.InlineCompletionContext(trigger_kind=lsp.InlineCompletionTriggerKind.Invoked),
            text_document=lsp.TextDocumentIdentifier(uri=uri), position=lsp.Position(line=0, character=8))), 30)
        assert texts(invoked) == [SCRIPT] and time.monotonic() - t0 < 5
    finally:
        client.workspace_did_change_configuration(lsp.DidChangeConfigurationParams(settings={"debounceMs": 0}))


async def test_inline_completion_on_a_5000_line_document(client: LanguageClient):
    lines = [f"v{i} = {i} * 2  # ü{i}" for i in range(5000)]
    lines[2500] = "w = "
    uri = open_doc(client, "\n".join(lines) + "\n")
    t0 = time.monotonic()
    result = await inline(client, uri, 2500, 4)
    assert texts(result) == [SCRIPT]
    assert result.items[0].range.start == lsp.Position(line=2500, character=4)
    assert time.monotonic() - t0 < 10


# -- diffucode/infill, applyEdit, versions ------------------------------------------------------------
async def test_infill_request_round_trip(client: LanguageClient):
    uri = open_doc(client, "x = 1\ny = x * 2\n", version=3)
    reply = await request(client, "diffucode/infill", {"textDocument": {"uri": uri}, "range": rng(1, 4, 1, 9)})
    assert reply["candidates"][0]["text"] == SCRIPT and reply["candidates"][0]["valid"]
    assert reply["version"] == 3 and reply["applied"] is None
    change0 = reply["edit"]["documentChanges"][0]
    assert change0["textDocument"] == {"uri": uri, "version": 3}
    assert change0["edits"] == [{"range": rng(1, 4, 1, 9), "newText": SCRIPT}]


async def test_snap_widens_a_ragged_selection_to_syntax_nodes(client: LanguageClient):
    uri = open_doc(client, "def f(x):\n    return x + 1\n")
    reply = await request(client, "diffucode/infill",
                          {"textDocument": {"uri": uri}, "range": rng(1, 12, 1, 15), "options": {"snap": True}})
    r = reply["edit"]["documentChanges"][0]["edits"][0]["range"]
    as_tuple = lambda p: (p["line"], p["character"])  # noqa: E731
    assert as_tuple(r["start"]) <= (1, 12) and as_tuple(r["end"]) >= (1, 15) and r != rng(1, 12, 1, 15)


async def test_apply_sends_a_versioned_text_document_edit(client: LanguageClient):
    uri = open_doc(client, "a = [1, 2]\nb = len(a)\n", version=7)
    n0 = len(client.applied)
    reply = await request(client, "diffucode/infill",
                          {"textDocument": {"uri": uri, "version": 7}, "range": rng(1, 4, 1, 10), "apply": True})
    assert reply["applied"] is True
    sent = client.applied[n0:]
    assert len(sent) == 1
    (tde,) = sent[0].edit.document_changes
    assert tde.text_document.uri == uri and tde.text_document.version == 7
    assert tde.edits[0].new_text == SCRIPT
    assert tde.edits[0].range == lsp.Range(start=lsp.Position(line=1, character=4),
                                           end=lsp.Position(line=1, character=10))


async def test_a_stale_version_is_refused(client: LanguageClient):
    uri = open_doc(client, "def f(x):\n    return x + 1\n", version=1)
    # The client's version is behind the server's: refused before any work.
    with pytest.raises(JsonRpcException) as err:
        await request(client, "diffucode/infill",
                      {"textDocument": {"uri": uri, "version": 0}, "range": rng(1, 11, 1, 16)})
    assert err.value.code == -32801
    # The user types while the job runs: the edit is computed but never sent.
    n0 = len(client.applied)
    job = asyncio.ensure_future(
        request(client, "diffucode/infill",
                {"textDocument": {"uri": uri}, "range": rng(1, 11, 1, 16), "apply": True, "options": LONG})
    )
    assert await until(lambda: any(p["uri"] == uri for _, p in client.steps))  # the job is running
    change(client, uri, 2, "def f(x):\n    return x + 2\n")
    reply = await job
    assert reply["applied"] is False and "changed" in reply["failureReason"]
    assert reply["version"] == 1
    assert len(client.applied) == n0


async def test_progress_sequence_and_denoise_steps(client: LanguageClient):
    uri = open_doc(client, "items = [3, 1, 2]\nitems.sort()\n")
    n0 = len(client.steps)
    client.progress_reports.setdefault("tok-1", [])  # a client-initiated token: the client knows it
    reply = await request(client, "diffucode/infill",
                          {"textDocument": {"uri": uri}, "range": rng(1, 0, 1, 12), "workDoneToken": "tok-1"})
    assert reply["candidates"]
    kinds = [type(v).__name__ for v in client.progress_reports["tok-1"]]
    assert kinds[0] == "WorkDoneProgressBegin" and kinds[-1] == "WorkDoneProgressEnd"
    assert "WorkDoneProgressReport" in kinds
    begin = client.progress_reports["tok-1"][0]
    assert begin.cancellable is True
    pct = [v.percentage for v in client.progress_reports["tok-1"][1:-1]]
    assert pct == sorted(pct)
    steps = [p for _, p in client.steps[n0:] if p["uri"] == uri]
    assert steps and steps[0]["range"] == rng(1, 0, 1, 12)
    assert [s["step"] for s in steps] == sorted(s["step"] for s in steps)
    assert "░" in steps[0]["texts"][0] and steps[-1]["maskedLeft"] == 0


async def test_server_created_progress_for_code_action_commands(client: LanguageClient):
    uri = open_doc(client, "n = 10\nm = n // 3\n", version=4)
    actions = await asyncio.wait_for(
        client.text_document_code_action_async(
            lsp.CodeActionParams(
                text_document=lsp.TextDocumentIdentifier(uri=uri),
                range=lsp.Range(start=lsp.Position(line=1, character=4), end=lsp.Position(line=1, character=10)),
                context=lsp.CodeActionContext(diagnostics=[]),
            )
        ),
        10,
    )
    assert [a.title for a in actions] == ["Infill selection", "Rewrite selection", "Repair low-confidence tokens"]
    n0, tokens0 = len(client.applied), set(client.progress_reports)
    cmd = actions[0].command
    answer = await asyncio.wait_for(client.workspace_execute_command_async(
        lsp.ExecuteCommandParams(command=cmd.command, arguments=cmd.arguments)), 10)
    assert answer == {"started": True}
    assert await until(lambda: len(client.applied) > n0)
    tde = client.applied[n0].edit.document_changes[0]
    assert tde.text_document.version == 4 and tde.edits[0].new_text == SCRIPT
    new_tokens = set(client.progress_reports) - tokens0
    assert new_tokens, "the command job should create its own progress token"
    values = client.progress_reports[new_tokens.pop()]
    assert type(values[0]).__name__ == "WorkDoneProgressBegin" and type(values[-1]).__name__ == "WorkDoneProgressEnd"


async def test_code_actions_need_a_selection_and_honour_only(client: LanguageClient):
    uri = open_doc(client, "z = 0\n")

    async def actions(r: lsp.Range, only=None):
        return await asyncio.wait_for(client.text_document_code_action_async(lsp.CodeActionParams(
            text_document=lsp.TextDocumentIdentifier(uri=uri), range=r,
            context=lsp.CodeActionContext(diagnostics=[], only=only))), 10)

    p = lsp.Position(line=0, character=2)
    assert list(await actions(lsp.Range(start=p, end=p))) == []
    full = lsp.Range(start=lsp.Position(line=0, character=0), end=lsp.Position(line=0, character=5))
    assert list(await actions(full, only=[lsp.CodeActionKind.QuickFix])) == []
    assert len(await actions(full, only=[lsp.CodeActionKind.Refactor])) == 3


# -- cancellation and responsiveness ------------------------------------------------------------------
async def test_cancel_request_stops_the_job_within_a_step(client: LanguageClient):
    uri = open_doc(client, "def g():\n    return 42\n")
    job = asyncio.ensure_future(
        request(client, "diffucode/infill", {"textDocument": {"uri": uri}, "range": rng(1, 11, 1, 13), "options": LONG},
                msg_id="long-1")
    )
    assert await until(lambda: any(p["uri"] == uri for _, p in client.steps))
    t_cancel = time.monotonic()
    client.protocol.notify("$/cancelRequest", lsp.CancelParams(id="long-1"))
    with pytest.raises(JsonRpcException) as err:
        await job
    assert err.value.code == -32800
    assert time.monotonic() - t_cancel < 1.0
    await asyncio.sleep(0.4)  # ten more forwards' worth of time
    late = [p for t, p in client.steps if p["uri"] == uri and t > t_cancel + 0.1]
    assert len(late) <= 1
    st = await status(client)
    assert st["jobs"]["running"] is None and st["liveJobs"] == 0


async def test_server_answers_while_a_long_job_runs(client: LanguageClient):
    uri = open_doc(client, "value = compute()\n")
    job = asyncio.ensure_future(
        request(client, "diffucode/infill", {"textDocument": {"uri": uri}, "range": rng(0, 8, 0, 17), "options": LONG})
    )
    assert await until(lambda: any(p["uri"] == uri for _, p in client.steps))
    t0 = time.monotonic()
    st = await status(client)
    acts = await client.text_document_code_action_async(lsp.CodeActionParams(
        text_document=lsp.TextDocumentIdentifier(uri=uri),
        range=lsp.Range(start=lsp.Position(line=0, character=0), end=lsp.Position(line=0, character=5)),
        context=lsp.CodeActionContext(diagnostics=[])))
    assert time.monotonic() - t0 < 1.0, "the event loop must not wait for the inference thread"
    assert st["jobs"]["running"] == "infill" and len(acts) == 3
    # A second generation queues behind the first (one inference thread) and is answered after it.
    other = asyncio.ensure_future(inline(client, open_doc(client, "q = \n"), 0, 4))
    reply = await job
    assert reply["candidates"][0]["text"].startswith(SCRIPT)
    assert texts(await other) == [SCRIPT]


async def test_status_answers_fast_during_a_job(client: LanguageClient):
    uri = open_doc(client, "r = range(3)\n")
    job = asyncio.ensure_future(
        request(client, "diffucode/infill", {"textDocument": {"uri": uri}, "range": rng(0, 4, 0, 12), "options": LONG},
                msg_id="long-3")
    )
    assert await until(lambda: any(p["uri"] == uri for _, p in client.steps))
    t0 = time.monotonic()
    st = await status(client)
    assert time.monotonic() - t0 < 1.0 and st["jobs"]["running"] == "infill"
    client.text_document_did_close(lsp.DidCloseTextDocumentParams(lsp.TextDocumentIdentifier(uri=uri)))
    with pytest.raises(JsonRpcException) as err:  # closing the document ends its job
        await job
    assert "closed" in err.value.message


# -- robustness ---------------------------------------------------------------------------------------
async def test_malformed_requests_get_errors_not_hangs(client: LanguageClient):
    uri = open_doc(client, "k = 1\n")
    bad = [
        ("textDocument/inlineCompletion", {"textDocument": {"uri": uri}}),  # no position
        ("textDocument/inlineCompletion",
         {"textDocument": {"uri": uri}, "position": {"line": -1, "character": "x"}, "context": {"triggerKind": 1}}),
        ("diffucode/infill", None),
        ("diffucode/infill", [1, 2]),
        ("diffucode/infill", {"textDocument": {"uri": uri}}),
        ("diffucode/infill", {"textDocument": {"uri": uri}, "range": rng(0, 0, 0, 1), "mode": "explode"}),
        ("diffucode/infill", {"textDocument": {"uri": uri}, "range": rng(0, 0, 0, 1), "options": {"steps": "many"}}),
        ("diffucode/infill", {"textDocument": {"uri": uri}, "range": rng(0, 0, 0, 1), "options": {"noSuchKnob": 1}}),
        ("diffucode/infill", {"textDocument": {"uri": uri}, "range": rng(0, 0, 9, 0)}),  # past the end
        ("diffucode/infill", {"textDocument": {"uri": uri}, "range": rng(0, 0, 0, 99)}),  # past the end of the line
        ("diffucode/infill", {"textDocument": {"uri": uri}, "range": rng(0, 3, 0, 1)}),  # reversed
        ("diffucode/infill",
         {"textDocument": {"uri": uri}, "range": rng(0, 1, 0, 1), "mode": "rewrite"}),  # empty rewrite
        ("diffucode/infill",
         {"textDocument": {"uri": uri}, "range": rng(0, 0, 0, 1), "mode": "instruct"}),  # no instruction
        ("diffucode/infill",
         {"textDocument": {"uri": uri}, "range": rng(0, 0, 0, 1), "mode": "instruct", "instruction": 3}),
        ("workspace/executeCommand", {"command": "diffucode.infillSelection", "arguments": []}),
        ("workspace/executeCommand", {"command": "diffucode.infillSelection", "arguments": [{"uri": uri}]}),
        ("workspace/executeCommand",
         {"command": "diffucode.rewriteSelection", "arguments": [{"uri": uri, "range": {"start": 1}}]}),
        ("workspace/executeCommand", {"command": "diffucode.noSuchCommand", "arguments": []}),
    ]
    for method, params in bad:
        with pytest.raises(JsonRpcException) as err:
            await raw_request(client, method, params)
        assert err.value.code in (-32602, -32600), (method, params, err.value)
    with pytest.raises(JsonRpcException) as err:
        await request(client, "diffucode/infill",
                      {"textDocument": {"uri": "file:///nowhere/x.py"}, "range": rng(0, 0, 0, 0)})
    assert err.value.code == -32803 and "not open" in err.value.message
    with pytest.raises(JsonRpcException) as err:  # the model has no chat template: a clear refusal
        await request(client, "diffucode/infill", {"textDocument": {"uri": uri}, "range": rng(0, 0, 0, 5),
                                                   "mode": "instruct", "instruction": "Use a constant."})
    assert err.value.code == -32803 and "need an instruct checkpoint" in err.value.message
    with pytest.raises(JsonRpcException) as err:
        await request(client, "diffucode/noSuchMethod", {})
    assert err.value.code == -32601
    # Unknown documents and positions past the end: empty inline results.
    assert await inline(client, "file:///nowhere/y.py", 0, 0) is None
    assert texts(await inline(client, uri, 5, 0)) == []
    assert texts(await inline(client, uri, 0, 50)) == []
    assert (await status(client))["loadError"] is None  # still alive and well


async def test_form_feeds_and_line_separators_do_not_shift_lines(client: LanguageClient):
    uri = open_doc(client, "a = 1\x0c\nb = '\u2028😀'\nc = 0\n")  # str.splitlines() sees 5 lines, LSP 3
    client.text_document_did_change(lsp.DidChangeTextDocumentParams(
        lsp.VersionedTextDocumentIdentifier(uri=uri, version=2),
        [lsp.TextDocumentContentChangePartial(range=lsp.Range(start=lsp.Position(line=2, character=4),
                                                              end=lsp.Position(line=2, character=5)), text="")]))
    result = await inline(client, uri, 2, 4)
    assert texts(result) == [SCRIPT]
    assert result.items[0].range.start == lsp.Position(line=2, character=4)
    reply = await request(client, "diffucode/infill",
                          {"textDocument": {"uri": uri, "version": 2}, "range": rng(1, 5, 1, 8)})
    assert reply["edit"]["documentChanges"][0]["edits"][0]["range"] == rng(1, 5, 1, 8)


async def test_text_that_is_not_valid_unicode_is_refused(client: LanguageClient):
    uri = open_doc(client, "s = '\udcff'\nt = \n")  # a lone surrogate, as JSON can carry one
    assert texts(await inline(client, uri, 1, 4)) == []
    with pytest.raises(JsonRpcException) as err:
        await request(client, "diffucode/infill", {"textDocument": {"uri": uri}, "range": rng(0, 0, 0, 1)})
    assert err.value.code == -32803 and "not valid Unicode" in err.value.message


async def test_settings_changes_and_a_failing_model_keep_the_server_up(client: LanguageClient, tiny_model_dir,
                                                                       tmp_path):
    uri = open_doc(client, "u = \n")
    client.workspace_did_change_configuration(lsp.DidChangeConfigurationParams(settings={"diffucode": {"steps": 0}}))
    assert await until(lambda: any("settings unchanged" in m.message for m in client.messages))
    assert (await status(client))["settings"]["steps"] is None

    client.workspace_did_change_configuration(
        lsp.DidChangeConfigurationParams(settings={"diffucode": {"maxFileChars": 3}}))
    with pytest.raises(JsonRpcException) as err:
        await request(client, "diffucode/infill", {"textDocument": {"uri": uri}, "range": rng(0, 0, 0, 1)})
    assert "too large" in err.value.message

    n0 = len(client.messages)
    client.workspace_did_change_configuration(lsp.DidChangeConfigurationParams(
        settings={"diffucode": {"model": str(tmp_path / "missing"), "maxFileChars": 2_000_000}}))
    assert texts(await inline(client, uri, 0, 4)) == []
    assert await until(lambda: any("cannot load" in m.message for m in client.messages[n0:]))
    with pytest.raises(JsonRpcException) as err:
        await request(client, "diffucode/infill", {"textDocument": {"uri": uri}, "range": rng(0, 0, 0, 1)})
    assert err.value.code == -32803
    st = await status(client)
    assert st["loaded"] is False and st["loadError"]

    client.workspace_did_change_configuration(
        lsp.DidChangeConfigurationParams(settings={"diffucode": {"model": str(tiny_model_dir)}}))
    assert texts((await inline(client, uri, 0, 4))) == [SCRIPT]
