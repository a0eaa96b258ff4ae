"""The language server with repository context (pytest-lsp, a real server process, scripted denoiser): the
workspace folder is indexed in the background, its drafts reach diffucode/infill, and the index follows
files that change while the server runs."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types as lsp
from pytest_lsp import ClientServerConfig, LanguageClient

from tests.test_context import HOLE_LINE, MAIN, UTILS
from tests.test_lsp import make_client, request, until

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.asyncio(loop_scope="module")
WORKSPACE: dict[str, Path] = {}


@pytest_lsp.fixture(
    scope="module",
    config=ClientServerConfig(
        server_command=[sys.executable, str(ROOT / "tests/e2e/lsp_scripted.py"), "--script", "x = 0"],
        client_factory=make_client,
    ),
)
async def client(lsp_client: LanguageClient, tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("ws") / "proj"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "utils.py").write_text(UTILS)
    (root / "pkg" / "main.py").write_text(MAIN)
    WORKSPACE["root"] = root
    caps = lsp.ClientCapabilities(workspace=lsp.WorkspaceClientCapabilities(
        did_change_watched_files=lsp.DidChangeWatchedFilesClientCapabilities(dynamic_registration=True)))
    registered = []

    @lsp_client.feature(lsp.CLIENT_REGISTER_CAPABILITY)
    def on_register(params: lsp.RegistrationParams):
        registered.extend(r.method for r in params.registrations)

    lsp_client.registered = registered
    await lsp_client.initialize_session(lsp.InitializeParams(
        capabilities=caps, workspace_folders=[lsp.WorkspaceFolder(uri=root.as_uri(), name="proj")],
        initialization_options={"model": str(tiny_model_dir), "debounceMs": 0, "maxNewTokens": 16}))
    yield
    await lsp_client.shutdown_session()


def hole_range() -> dict:
    line = MAIN.split("\n").index(HOLE_LINE.rstrip("\n"))
    return {"start": {"line": line, "character": 0}, "end": {"line": line + 1, "character": 0}}


async def infill_main(client: LanguageClient) -> dict:
    return await request(client, "diffucode/infill", {"textDocument": {"uri": main_uri(client)},
                                                       "range": hole_range()})


def main_uri(client: LanguageClient) -> str:
    uri = (WORKSPACE["root"] / "pkg" / "main.py").as_uri()
    if not getattr(client, "opened", False):
        client.text_document_did_open(lsp.DidOpenTextDocumentParams(lsp.TextDocumentItem(
            uri=uri, language_id="python", version=1, text=MAIN)))
        client.opened = True
    return uri


async def ready(client: LanguageClient) -> bool:
    async def indexed():
        st = await request(client, "diffucode/status", {})
        return bool(st["context"]) and st["context"][0]["ready"]

    for _ in range(200):
        if await indexed():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_the_folder_is_indexed_and_its_draft_wins(client: LanguageClient):
    await infill_main(client)  # the first job starts indexing the folder in the background
    assert await ready(client)
    reply = await infill_main(client)
    best = reply["candidates"][0]
    assert best["text"] == HOLE_LINE and "draft from utils.py" in best["reason"]
    assert await until(lambda: lsp.WORKSPACE_DID_CHANGE_WATCHED_FILES in client.registered)


async def test_the_index_follows_files_changed_on_disk_while_the_server_runs(client: LanguageClient):
    assert await ready(client)
    root = WORKSPACE["root"]
    (root / "pkg" / "utils.py").unlink()
    other = root / "pkg" / "other.py"
    other.write_text(UTILS.replace("parse_settings", "parse_other"))
    client.workspace_did_change_watched_files(lsp.DidChangeWatchedFilesParams(changes=[
        lsp.FileEvent(uri=(root / "pkg" / "utils.py").as_uri(), type=lsp.FileChangeType.Deleted),
        lsp.FileEvent(uri=other.as_uri(), type=lsp.FileChangeType.Created)]))
    await asyncio.sleep(0.2)
    reply = await infill_main(client)
    texts = [c["text"] for c in reply["candidates"]]
    assert "    settings = parse_other(text)\n" in texts and HOLE_LINE not in texts
