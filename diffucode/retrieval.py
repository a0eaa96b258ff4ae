"""Retrieval for a hole: the places in the user's project whose surroundings look like the hole's.

A hole (lines `a..b` of a file) is described by its surroundings: the `window` lines above it and the
`window` lines below it. Every run of the same number of lines elsewhere in the project is a candidate;
its score compares its surroundings with the hole's line by line: the token Jaccard similarity of the
line just above with the line just above, and so on, nearer lines weighing more ("lines"). RepoCoder's
sparse retriever, one Jaccard of all the surroundings' words ("jaccard"), is kept as the baseline it
is measured against (docs/context.md). The candidate's own lines, fitted to the hole (fitting.py), are
the draft.

Fast enough for every keystroke: each identifier keeps the lines it occurs on (numpy postings); a
query votes for candidate starts through the rare identifiers of the hole's surroundings, and only the
best-voted few hundred are scored exactly. No torch, no model; above fitting.py.

The text being regenerated never reaches a draft: the caller passes the current file's text with the
span removed, and the index's copy of that file (which may still hold the old span) is not searched.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np

from diffucode.fitting import Hole, fit_draft
from diffucode.renaming import adapt, enclosing_headers, header_for, indent

TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+")  # words: punctuation is in every window and tells nothing
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MATCHES = ("lines", "jaccard")  # how a candidate's surroundings are compared with the hole's
_BREAK = re.compile("\n")
HEADER_LINES = 400  # lines above a candidate searched for the header enclosing it
TOKEN_OR_BREAK = re.compile(r"\n|[A-Za-z_][A-Za-z0-9_]*|\d+")


@dataclass(frozen=True)
class Snippet:
    """A retrieved draft: lines of `path` starting at 0-based `line`, and how well it matched."""

    path: Path
    line: int
    text: str  # the draft, re-indented and trimmed to fit the hole
    score: float  # how well the surroundings match the hole's, 0..1 (LineIndex.search's `match`)
    excerpt: str = ""  # the draft's lines with their surroundings, as they are in `path` (prompt context)


class LineIndex:
    """An inverted index of the lines of many files; `add` files, then `search` holes.

    Every file's tokens are kept as numpy arrays; `build` sorts the (identifier, line) pairs of all files
    into one postings table. Files added after `build` are searched from a small overflow until the next
    `build`; replaced or removed files stop counting at once and are dropped from the table when it is
    rebuilt.
    """

    def __init__(self, *, window: int = 3, max_df: float = 0.02, max_postings: int = 4000):
        self.window = window
        self._line_weights = 2 * sum(1 / d for d in range(1, window + 1))  # _by_lines' largest total
        self.max_df, self.max_postings = max_df, max_postings  # identifiers on more lines do not vote
        self.vocab: defaultdict[str, int] = defaultdict()
        self.vocab.default_factory = self.vocab.__len__  # a new token gets the next id, at C speed
        self.vocab["\n"]  # id 0: the line break
        self._ident = np.zeros(1, dtype=bool)  # per token id: an identifier (votes) or not
        self.files: list[_File] = []
        self.by_path: dict[Path, int] = {}
        self._firsts: list[int] = []  # per file id: its first global line id
        self._dead = np.zeros(0, dtype=bool)  # per file id: replaced or removed
        self.n_lines = 0
        self._table = _Postings.empty()  # built
        self._overflow: list[int] = []  # file ids added since the last build
        self._starts: dict[int, np.ndarray] = {}  # per file id, once read: where each line starts
        self._firsts_np: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.files) - int(self._dead.sum())

    def add(self, path: Path, text: str) -> None:
        """Index `text` as the content of `path` (replacing what the index held for it)."""
        self.remove(path)
        fid = len(self.files)
        f = _File.tokenize(path, text, self.vocab, self.n_lines)
        self.files.append(f)
        self.by_path[path] = fid
        self._firsts.append(self.n_lines)
        self._firsts_np = None
        self._dead = np.append(self._dead, False) if len(self.files) > len(self._dead) else self._dead
        self.n_lines += f.n_lines
        self._overflow.append(fid)

    def remove(self, path: Path) -> None:
        fid = self.by_path.pop(path, None)
        if fid is not None:
            self._dead[fid] = True
            self.files[fid] = self.files[fid].emptied()  # its text is not needed any more
            self._starts.pop(fid, None)

    def build(self) -> None:
        """Sort every live file's (identifier, line) pairs into the postings table."""
        self._dead = np.resize(self._dead, len(self.files))
        live = [f for i, f in enumerate(self.files) if not self._dead[i]]
        self._grow_ident()
        self._table = _Postings.of(live, self._ident, len(self.vocab))
        self._overflow = []

    def compact(self, max_overflow: int = 64) -> None:
        """Rebuild the postings once many files were added since the last build (edits re-add a file)."""
        if len(self._overflow) > max_overflow:
            self.build()

    def _grow_ident(self) -> None:
        old = len(self._ident)
        if len(self.vocab) > old:
            new = list(islice(reversed(self.vocab), len(self.vocab) - old))[::-1]
            self._ident = np.concatenate([self._ident, [bool(IDENT.fullmatch(t)) for t in new]])

    # -- search ---------------------------------------------------------------------------------------
    def search(self, hole: Hole, *, k: int = 4, exclude: Iterable[Path] = (), pool: int = 256,
               match: str = "lines", rename: bool = True) -> list[Snippet]:
        """The `k` best drafts for `hole` in the indexed files other than `exclude`, best first: the `pool`
        most voted starts are scored (`match`: one of MATCHES), then turned into drafts best first until
        `k` differ; `rename`: with the names of their place renamed to the hole's (renaming.py)."""
        n = hole.n_lines
        above = [self._query_tokens(line) for line in hole.above]
        below = [self._query_tokens(line) for line in hole.below]
        if match not in MATCHES:
            raise ValueError(f"match must be one of {MATCHES}, not {match!r}")
        if match == "lines":
            scorer = lambda start: self._by_lines(start, n, above, below)  # noqa: E731
        else:
            everything = set().union(*above, *below)
            scorer = lambda start: self._jaccard(start, n, everything)  # noqa: E731
        skip = {self.by_path[p] for p in exclude if p in self.by_path}
        scored = [scorer(int(start)) for start in self._vote(hole, n, pool, skip)]
        found: list[Snippet] = []
        seen: set[str] = set()
        for score, fid, i in sorted((x for x in scored if x is not None), key=lambda x: -x[0]):
            w, size = self.window, self.files[fid].n_lines
            before, body = self._lines(fid, max(0, i - w), i), self._lines(fid, i, i + n)
            after = self._lines(fid, i + n, min(size, i + n + w))
            draft = fit_draft(body, before, after, hole)
            if draft is not None and rename:
                draft = self._renamed(draft, fid, i, body, hole)
            if draft is not None and draft not in seen:
                seen.add(draft)
                found.append(Snippet(self.files[fid].path, i, draft, score, "\n".join(before + body + after)))
                if len(found) == k:
                    break
        return found

    def _renamed(self, draft: str, fid: int, i: int, body: list[str], hole: Hole) -> str:
        """The draft with the names of its place (the header enclosing line i of the file) renamed to the
        hole's (the header enclosing the draft where it is laid; renaming.py)."""
        if not hole.headers:
            return draft
        above = self._lines(fid, max(0, i - HEADER_LINES), i)
        first = next((line for line in body if line.strip()), "")
        laid = next((line for line in draft.split("\n") if line.strip()), "")
        here = header_for(hole.headers, indent(hole.head + laid))
        there = header_for(enclosing_headers(above + [first]), indent(first))
        return adapt(draft, there, here, hole.words) if here and there and here != there else draft

    def _query_tokens(self, line: str) -> set[int]:
        return {self.vocab[t] if t in self.vocab else -1 - hash(t) % 10**9 for t in TOKEN.findall(line)}

    def _vote(self, hole: Hole, n: int, pool: int, skip: set[int]) -> np.ndarray:
        """Candidate start lines, most voted first: an identifier on line j above the hole votes for starts
        j+1..j+window, one below it for j-n-window+1..j-n."""
        limit = max(200, min(int(self.max_df * self.n_lines), self.max_postings))
        parts = []
        for lines, offsets in ((hole.above, range(1, self.window + 1)),
                               (hole.below, range(-n - self.window + 1, -n + 1))):
            for t in {self.vocab[w] for line in lines for w in IDENT.findall(line) if w in self.vocab}:
                post = self._lines_of(t)
                if 0 < post.size <= limit:
                    post = post.astype(np.int64)
                    parts += [post + d for d in offsets]
        if not parts:
            return np.zeros(0, dtype=np.int64)
        starts, votes = _counts(np.concatenate(parts))
        if self._firsts_np is None:
            self._firsts_np = np.asarray(self._firsts, dtype=np.int64)
        fids = np.searchsorted(self._firsts_np, starts, side="right") - 1
        ok = (starts >= 0) & (starts + n <= self.n_lines) & ~self._dead[fids]
        if skip:
            ok &= ~np.isin(fids, list(skip))
        starts, votes = starts[ok], votes[ok]
        return starts[np.argsort(-votes, kind="stable")[:pool]]

    def _lines_of(self, t: int) -> np.ndarray:
        post = self._table.lines_of(t)
        extra = [self.files[i].lines_with(t) for i in self._overflow if not self._dead[i]]
        extra = [x for x in extra if x.size]
        return np.concatenate([post, *extra]) if extra else post

    def _place(self, start: int, n: int) -> tuple[int, int] | None:
        """(file id, local line) of the n lines at global line `start`; None past the file's end or when
        the lines hold no word."""
        fid = bisect_right(self._firsts, start) - 1
        f = self.files[fid]
        i = start - f.first
        if i + n > f.n_lines or f.ends[i + n - 1] == (f.ends[i - 1] if i > 0 else 0):
            return None
        return fid, i

    def _jaccard(self, start: int, n: int, query: set[int]):
        """(Jaccard of all the surroundings' words with the hole's, `query`, file id, local line), or None."""
        place = self._place(start, n)
        if place is None:
            return None
        fid, i = place
        f, w = self.files[fid], self.window
        ctx = f.token_set(max(0, i - w), i) | f.token_set(i + n, min(f.n_lines, i + n + w))
        return _overlap(ctx, query), fid, i

    def _by_lines(self, start: int, n: int, above: list[set[int]], below: list[set[int]]):
        """(the line-by-line match, file id, local line), or None: the Jaccard of the d-th line above the
        candidate with the d-th line above the hole, and the same below, weighted 1/d and averaged. A line
        of the hole's window without words (blank, or past the file's end) scores 0 for every candidate, so
        such a hole's best match is below 1 (0.5 at the end of a file). Measured against `_jaccard` in
        docs/context.md (it ranks the right line first more often; averaging over the lines with words
        only ranked HumanEval's drafts worse)."""
        place = self._place(start, n)
        if place is None:
            return None
        fid, i = place
        f, total = self.files[fid], 0.0
        for d in range(1, self.window + 1):
            up = f.token_set(i - d, i - d + 1) if i >= d else set()
            down = f.token_set(i + n + d - 1, i + n + d) if i + n + d <= f.n_lines else set()
            total += (_overlap(up, above[-d] if d <= len(above) else set())
                      + _overlap(down, below[d - 1] if d <= len(below) else set())) / d
        return total / self._line_weights, fid, i

    def _lines(self, fid: int, lo: int, hi: int) -> list[str]:
        """Lines lo..hi-1 of a file (where its lines start is found once, then kept)."""
        starts = self._starts.get(fid)
        text = self.files[fid].text
        if starts is None:
            starts = self._starts[fid] = np.array([0] + [m.end() for m in _BREAK.finditer(text)] + [len(text) + 1])
        return [text[starts[j] : starts[j + 1] - 1] for j in range(lo, hi)]


@dataclass(frozen=True)
class _File:
    """One indexed file: its text, token ids (line breaks dropped) and where each line's tokens end."""

    path: Path
    first: int  # global id of its first line
    text: str
    tokens: np.ndarray  # (n_tokens,) int32
    ends: np.ndarray  # (n_lines,) int64: line i's tokens are tokens[ends[i-1]:ends[i]]

    @property
    def n_lines(self) -> int:
        return len(self.ends)

    @classmethod
    def tokenize(cls, path: Path, text: str, vocab: dict, first: int) -> "_File":
        toks = TOKEN_OR_BREAK.findall(text)
        ids = np.fromiter(map(vocab.__getitem__, toks), dtype=np.int32, count=len(toks))
        brk = ids == 0
        line = np.cumsum(brk) - brk  # the line each token is on (a break ends its line)
        keep = ~brk
        n_lines = text.count("\n") + 1
        ids, line = ids[keep], line[keep]
        ends = np.searchsorted(line, np.arange(n_lines), side="right").astype(np.int64)
        return cls(path, first, text, ids, ends)

    def emptied(self) -> "_File":
        return _File(self.path, self.first, "", self.tokens[:0], np.zeros(self.n_lines, dtype=np.int64))

    def keys(self, ident: np.ndarray) -> np.ndarray:
        """identifier id << 32 | global line id, for each identifier token (repeats included)."""
        line = np.repeat(np.arange(self.first, self.first + self.n_lines, dtype=np.int64),
                         np.diff(self.ends, prepend=0))
        keep = ident[self.tokens]
        return self.tokens[keep].astype(np.int64) << 32 | line[keep]

    def token_set(self, lo: int, hi: int) -> set[int]:
        """The token ids of local lines lo..hi-1."""
        if hi <= lo:
            return set()
        a = int(self.ends[lo - 1]) if lo > 0 else 0
        return set(self.tokens[a : int(self.ends[hi - 1])].tolist())

    def lines_with(self, t: int) -> np.ndarray:
        """Global ids of the lines holding token `t` (overflow search, before a build)."""
        pos = np.flatnonzero(self.tokens == t)
        return np.unique(np.searchsorted(self.ends, pos, side="right") + self.first).astype(np.int32)


@dataclass(frozen=True)
class _Postings:
    """Identifier id -> the sorted global ids of the lines it occurs on, as one CSR table."""

    lines: np.ndarray  # int32, grouped by identifier
    offsets: np.ndarray  # (vocab + 1,) int64

    @classmethod
    def empty(cls) -> "_Postings":
        return cls(np.zeros(0, dtype=np.int32), np.zeros(1, dtype=np.int64))

    @classmethod
    def of(cls, files: list[_File], ident: np.ndarray, vocab_size: int) -> "_Postings":
        if not files:
            return cls.empty()
        key = _sorted_unique(np.concatenate([f.keys(ident) for f in files]))  # by identifier, then line
        tok = key >> 32
        counts = np.bincount(tok, minlength=vocab_size)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls((key & 0xFFFFFFFF).astype(np.int32), offsets)

    def lines_of(self, t: int) -> np.ndarray:
        if t + 1 >= len(self.offsets):
            return self.lines[:0]
        return self.lines[self.offsets[t] : self.offsets[t + 1]]


def _overlap(a: set[int], b: set[int]) -> float:
    """The Jaccard similarity of two sets of token ids (0 when both are empty)."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def _sorted_unique(a: np.ndarray) -> np.ndarray:
    a = np.sort(a)
    return a[np.concatenate([[True], a[1:] != a[:-1]])] if a.size else a


def _counts(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of `a` and how often each occurs (by sorting: faster here than hashing)."""
    a = np.sort(a)
    first = np.flatnonzero(np.concatenate([[True], a[1:] != a[:-1]]))
    return a[first], np.diff(np.append(first, a.size))


def distinct(found: list[Snippet], k: int) -> list[Snippet]:
    seen, out = set(), []
    for s in found:
        if s.text not in seen:
            seen.add(s.text)
            out.append(s)
            if len(out) == k:
                break
    return out

