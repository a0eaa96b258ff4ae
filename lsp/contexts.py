"""The language server's repository context: one indexed workspace per workspace folder, kept current.

Each workspace folder gets a `RepoContext` (diffucode/context.py) the first time a document in it asks
for drafts; its index builds on a background thread, so a request never waits for it (until it is
ready, drafts come from the document itself). Saved, closed, created, changed and deleted files update
the index; unsaved edits of the current document need no update, since drafts for a hole are always
taken from the document's live text with the hole cut out.
"""

from __future__ import annotations

import logging
from pathlib import Path

from diffucode.context import RepoContext
from diffucode.retrieval import Snippet
from diffucode.settings import InfillSettings
from diffucode.workspace import LANGUAGE_EXTS, Limits, Workspace

log = logging.getLogger(__name__)
SOURCE_EXTS = tuple(sorted({e for exts in LANGUAGE_EXTS.values() for e in exts}))


class Contexts:
    """RepoContext per workspace folder, created on first use."""

    def __init__(self) -> None:
        self.folders: list[Path] = []
        self.by_root: dict[Path, RepoContext] = {}

    def set_folders(self, roots: list[Path]) -> None:
        """The client's workspace folders (initialize, didChangeWorkspaceFolders); contexts of removed ones go."""
        self.folders = sorted({r.resolve() for r in roots}, key=lambda r: -len(r.parts))  # innermost first
        self.by_root = {r: c for r, c in self.by_root.items() if r in self.folders}

    def root_of(self, path: Path) -> Path | None:
        return next((r for r in self.folders if path.is_relative_to(r)), None)

    def for_path(self, path: Path | None, settings: InfillSettings) -> RepoContext | None:
        """The context that drafts holes of the document at `path` (None when context is off)."""
        if settings.context == "none" or not settings.drafts:
            return None
        root = self.root_of(path) if path is not None and settings.context == "repo" else None
        if root is None:
            return RepoContext(None, mode="file")
        ctx = self.by_root.get(root)
        if ctx is None:
            ctx = self.by_root[root] = RepoContext(Workspace(root, limits=Limits(exts=SOURCE_EXTS)), mode="repo")
            ctx.start_indexing()
            log.info("indexing %s in the background", root)
        return ctx

    def drafts_for(self, path: Path | None, text: str, base: int, settings: InfillSettings):
        """The drafts callback for a job on `text` (the whole document; the job's window starts at `base`)."""
        ctx = self.for_path(path, settings)
        if ctx is None:
            return None

        def drafts(start: int, end: int) -> list[Snippet]:
            return ctx.drafts(path, text, start + base, end + base, k=settings.drafts, wait=False)

        return drafts

    def file_changed(self, path: Path, text: str | None) -> None:
        """A file's new text (saved, created, changed on disk), or None (deleted), for the folder holding it."""
        root = self.root_of(path.resolve())
        ctx = self.by_root.get(root) if root is not None else None
        if ctx is not None:
            ctx.changed(path, text)

    def status(self) -> list[dict]:
        return [{"root": str(r), "ready": c.ready, "files": len(c.index()) if c.ready else None,
                 "index_ms": round(c.index_seconds * 1e3, 1) if c.ready else None} for r, c in self.by_root.items()]
