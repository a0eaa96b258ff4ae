"""Inline-completion latency as an editor sees it, and server memory after many requests.

    python benchmarks/bench_lsp.py                    # the embedded model, else a random `small` one
    python benchmarks/bench_lsp.py --model FOLDER     # any diffucode model folder (or hub id)
    python benchmarks/bench_lsp.py --requests 200     # a shorter memory run

Starts `python -m diffucode_lsp` over stdio (a real server process), opens a fixed Python file
(the standard library's json/decoder.py) and, for a fixed set of cursor positions, does what an
editor does when the user has typed up to the cursor: a full-text didChange to the document cut at
the cursor, then a textDocument/inlineCompletion request. Latency is request -> response on the
client's clock, with the model warm (one request before timing), server debounce 0 (the default
debounceMs, 150, adds to it) and the generation settings given by --settings (default: the
server's defaults). Memory: the server's RSS
(/proc) after warm-up and after N more requests with short settings (--rss-* flags), so the run
stays within minutes; growth between the two is what matters.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from lsprotocol import types as lsp
from pygls.lsp.client import LanguageClient

from diffucode.loading import EMBEDDED

URI = "file:///bench/decoder.py"
SOURCE = Path(sysconfig.get_paths()["stdlib"]) / "json" / "decoder.py"  # the document


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def cursor_cases(text: str, n: int) -> list[tuple[str, int, int]]:
    """(document cut at the cursor + the rest of the file, line, UTF-16 column), spread over the file.

    Cursors sit right after `= `, `return `, `if ` or a block header's newline + indent: the places
    where people pause and wait for a completion."""
    lines = text.split("\n")
    spots = []
    for i, line in enumerate(lines):
        m = re.search(r"(?<![=!<>])= |\breturn |\bif ", line)
        if m:
            spots.append((i, m.end()))
        elif line.rstrip().endswith(":") and line.lstrip().startswith(("def ", "for ", "if ", "while ", "with ")):
            indent = len(line) - len(line.lstrip()) + 4
            spots.append((i + 1, -indent))  # a new, empty body line
    picked = spots[:: max(1, len(spots) // n)][:n]
    cases = []
    for line_no, col in picked:
        if col < 0:
            doc_lines = lines[:line_no] + [" " * -col] + lines[line_no:]
            col = -col
        else:
            doc_lines = lines[:line_no] + [lines[line_no][:col]] + lines[line_no + 1 :]
        utf16 = len(doc_lines[line_no][:col].encode("utf-16-le")) // 2
        cases.append(("\n".join(doc_lines), line_no, utf16))
    return cases


def rss_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Bench:
    def __init__(self, init: dict, workspace: Path | None = None):
        self.init = init
        self.workspace = workspace  # a workspace folder: the document sits in it, so its drafts come from it
        self.uri = URI
        if workspace is not None:
            # The document is its own file when the workspace holds it (the standard library does), so the
            # server leaves the file's text on disk out of the search, as for any file being edited: the
            # lines after the cursor must not come back as a draft from the index.
            inside = SOURCE.resolve().is_relative_to(workspace.resolve())
            self.uri = (SOURCE if inside else workspace / "diffucode_bench_decoder.py").resolve().as_uri()
        self.client = LanguageClient("bench", "0")
        self.version = 1
        for method in (lsp.WINDOW_LOG_MESSAGE, lsp.WINDOW_SHOW_MESSAGE, lsp.PROGRESS):
            self.client.feature(method)(lambda params: None)

    async def start(self) -> None:
        await self.client.start_io(sys.executable, "-m", "diffucode_lsp", "--log-level", "warning")
        folders = [lsp.WorkspaceFolder(uri=self.workspace.as_uri(), name="bench")] if self.workspace else None
        await self.client.initialize_async(lsp.InitializeParams(capabilities=lsp.ClientCapabilities(),
                                                                initialization_options=self.init,
                                                                workspace_folders=folders))
        self.client.initialized(lsp.InitializedParams())

    async def wait_for_index(self, timeout: float = 300) -> float | None:
        """Seconds until the workspace folder's index is ready (None without a workspace folder, or when the
        server indexes nothing: context "none")."""
        t0 = time.perf_counter()
        while self.workspace and time.perf_counter() - t0 < timeout:
            ctx = [c._asdict() if hasattr(c, "_asdict") else c for c in (await self.status()).get("context") or []]
            if not ctx:
                return None
            if ctx[0]["ready"]:
                return ctx[0]["index_ms"] / 1e3
            await asyncio.sleep(0.2)
        return None

    @property
    def pid(self) -> int:
        return self.client._server.pid

    def open(self, text: str) -> None:
        self.client.text_document_did_open(lsp.DidOpenTextDocumentParams(
            lsp.TextDocumentItem(uri=self.uri, language_id="python", version=1, text=text)))

    def settings(self, raw: dict) -> None:
        self.client.workspace_did_change_configuration(lsp.DidChangeConfigurationParams(settings=raw))

    async def complete(self, text: str, line: int, col: int) -> tuple[float, int]:
        self.version += 1
        self.client.text_document_did_change(lsp.DidChangeTextDocumentParams(
            lsp.VersionedTextDocumentIdentifier(uri=self.uri, version=self.version),
            [lsp.TextDocumentContentChangeWholeDocument(text=text)]))
        t = time.perf_counter()
        res = await self.client.text_document_inline_completion_async(lsp.InlineCompletionParams(
            context=lsp.InlineCompletionContext(trigger_kind=lsp.InlineCompletionTriggerKind.Automatic),
            text_document=lsp.TextDocumentIdentifier(uri=self.uri), position=lsp.Position(line=line, character=col)))
        return (time.perf_counter() - t) * 1e3, len(res.items) if res else 0

    async def status(self) -> dict:
        res = await self.client.protocol.send_request_async("diffucode/status", None)
        return res._asdict() if hasattr(res, "_asdict") else res

    async def stop(self) -> None:
        await self.client.shutdown_async(None)
        self.client.exit(None)
        await self.client.stop()


async def latency(args, cases) -> dict:
    bench = Bench({"model": args.model, "debounceMs": 0, **args.settings}, args.workspace)
    await bench.start()
    bench.open(cases[0][0])
    t = time.perf_counter()
    await bench.complete(*cases[0])  # loads the model (and starts indexing the workspace folder)
    load_ms = (time.perf_counter() - t) * 1e3
    index_s = await bench.wait_for_index()
    lat, nonempty = [], 0
    for _ in range(args.repeat):
        for case in cases:
            ms, n = await bench.complete(*case)
            lat.append(ms)
            nonempty += n > 0
    await bench.stop()
    return {"model": args.model_label, "settings": json.dumps({"debounceMs": 0, **args.settings}),
            "positions": len(cases),
            "workspace": str(args.workspace) if args.workspace else None,
            "index_s": round(index_s, 2) if index_s is not None else None,
            "requests": len(lat), "first_request_ms": round(load_ms), "p50_ms": round(pct(lat, 0.5), 1),
            "p95_ms": round(pct(lat, 0.95), 1), "mean_ms": round(statistics.fmean(lat), 1), "with_items": nonempty}


async def memory(args, cases) -> dict:
    """A fresh server: RSS after 10 warm-up requests, then after `--requests` more."""
    bench = Bench({"model": args.rss_model, "debounceMs": 0, **args.rss_settings})
    await bench.start()
    bench.open(cases[0][0])
    for i in range(10):
        await bench.complete(*cases[i % len(cases)])
    rss0, t0 = rss_of(bench.pid), time.perf_counter()
    lat = []
    for i in range(args.requests):
        ms, _ = await bench.complete(*cases[i % len(cases)])
        lat.append(ms)
    rss1 = rss_of(bench.pid)
    st = await bench.status()
    jobs = st["jobs"]._asdict() if hasattr(st["jobs"], "_asdict") else st["jobs"]
    await bench.stop()
    return {"rss_model": args.rss_model_label, "rss_settings": json.dumps({"debounceMs": 0, **args.rss_settings}),
            "rss_requests": args.requests, "rss_before_mib": round(rss0 / 2**20, 1),
            "rss_after_mib": round(rss1 / 2**20, 1),
            "rss_run_s": round(time.perf_counter() - t0, 1), "rss_p50_ms": round(pct(lat, 0.5), 1),
            "server_jobs_done": jobs["done"], "server_live_jobs": st["liveJobs"]}


def _random(preset: str, vocab: int, tmp: Path) -> str:
    from diffucode.testing import random_model

    return str(random_model(tmp / preset, preset_name=preset, vocab_size=vocab))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None,
                   help="model folder or hub id (default: embedded if present, else a random --preset model)")
    p.add_argument("--preset", default="small",
                   help="preset for the random model when none is given (default: small, vocab 4096)")
    p.add_argument("--positions", type=int, default=30, help="fixed cursor positions (default 30)")
    p.add_argument("--repeat", type=int, default=2, help="timed passes over the positions (default 2)")
    p.add_argument("--settings", type=json.loads, default={},
                   help="server settings (JSON) for the latency run, e.g. '{\"steps\": 4}'")
    p.add_argument("--requests", type=int, default=1000, help="requests for the memory run (0: skip; default 1000)")
    p.add_argument("--rss-model", default=None, help="model for the memory run (default: the latency run's)")
    p.add_argument("--rss-preset", default=None, help="or a random model of this preset for the memory run (e.g. tiny)")
    p.add_argument("--rss-settings", type=json.loads, default={"steps": 2, "maxNewTokens": 8, "contextTokens": 256},
                   help="settings for the memory run (default: steps 2, maxNewTokens 8, contextTokens 256)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--workspace", type=Path, default=None,
                   help="open the document inside this workspace folder (e.g. the standard library), so that "
                        "the default context setting (repo) drafts from it; timing starts once it is indexed")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            args.model_label = args.model
        elif (EMBEDDED / "config.json").is_file():
            args.model, args.model_label = "default", "embedded"
        else:
            args.model = _random(args.preset, 4096, Path(tmp))
            args.model_label = f"random `{args.preset}` preset, vocab 4096 (no embedded model in this checkout)"
        if args.rss_preset:
            args.rss_model = _random(args.rss_preset, 4096 if args.rss_preset != "tiny" else 512, Path(tmp))
            args.rss_model_label = f"random `{args.rss_preset}` preset"
        else:
            args.rss_model = args.rss_model or args.model
            args.rss_model_label = args.rss_model if args.rss_model != args.model else args.model_label
        source = SOURCE.read_text(encoding="utf-8")
        cases = cursor_cases(source, args.positions)
        out = asyncio.run(latency(args, cases)) if args.repeat else {}
        if args.requests:
            out.update(asyncio.run(memory(args, cases)))
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"CPUs: {os.cpu_count()}; load average at the end: {os.getloadavg()[0]:.1f}")
    print("| measure | value |\n|---|---|")
    if "p50_ms" in out:
        print(f"| model / settings | {out['model']} / `{out['settings']}` |")
        print(f"| inline completion p50 (request → response, warm) | {out['p50_ms']} ms |")
        print(f"| inline completion p95 | {out['p95_ms']} ms |")
        print(f"| mean / requests / positions | {out['mean_ms']} ms / {out['requests']} / {out['positions']} |")
        print(f"| responses with an item | {out['with_items']} of {out['requests']} |")
        print(f"| first request (model load + completion) | {out['first_request_ms']} ms |")
    if "rss_requests" in out:
        print(f"| memory run model / settings | {out['rss_model']} / `{out['rss_settings']}` |")
        print(f"| server RSS after 10 warm-up requests | {out['rss_before_mib']} MiB |")
        print(f"| server RSS after {out['rss_requests']} more requests | {out['rss_after_mib']} MiB |")
        print(f"| memory run: wall time, p50, jobs done, live jobs left | {out['rss_run_s']} s, "
              f"{out['rss_p50_ms']} ms, {out['server_jobs_done']}, {out['server_live_jobs']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
