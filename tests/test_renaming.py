"""Renaming a retrieved draft's names to the hole's place (diffucode/renaming.py), alone and in retrieval."""

from diffucode.context import RepoContext
from diffucode.fitting import Hole
from diffucode.renaming import adapt, enclosing_headers, header_for, renamings
from diffucode.retrieval import LineIndex


def test_sibling_functions_names_become_the_holes():
    # Whole identifiers, names inside longer ones between underscores, parts of compound names, strings.
    assert adapt("    return self.grant_types.get(self.default_grant_type)\n",
                 "def default_grant_type_handler(self):", "def default_response_type_handler(self):") == \
        "    return self.response_types.get(self.default_response_type)\n"
    assert adapt("    return lib.parse_http_list(u)\n", "def parse_http_list(u):", "def parse_kv_list(l):") == \
        "    return lib.parse_kv_list(l)\n"
    assert adapt("        return self._valid_methods\n", "def valid_methods(self):", "def catch_errors(self):") == \
        "        return self._catch_errors\n"
    assert adapt('        raise self._must_implement("verify_realms")\n', "def verify_realms(self, token):",
                 "def get_redirect_uri(self, token):") == '        raise self._must_implement("get_redirect_uri")\n'


def test_nothing_is_renamed_without_a_reason():
    line = "    return self.handler.get(key)\n"
    assert adapt(line, "def lookup(self, key):", "def lookup(self, key):") == line  # same header
    assert adapt(line, "def lookup(self, key):", "") == line  # no header at the hole
    assert adapt(line, "def get_item(self, key):", "def set_item(self, key):") == line  # `get` alone: too common
    assert renamings("def f(self, a, b):", "def f(self, x):") == ({}, {})  # the parameters do not align one to one


def test_what_could_mislead_the_alignment_is_left_out():
    # A comment indented less than the code does not hide the def; brackets in a default string or a
    # comment do not stretch a header over the body; a def never aligns with a class; digits are not
    # parts (`v1` -> `v2` must not make `sha1` `sha2`); the text typed on a hole's line is never a word.
    lines = ["class Invoice(Model):", "    def save(self):", "    # keep in sync with Account", "        self.touch()"]
    assert header_for(enclosing_headers(lines), 8) == "def save(self):"
    assert enclosing_headers(["def split_on(self, sep='('):  # (", "    parts = 1"]) == (
        (0, "def split_on(self, sep='('):  # ("),)
    assert renamings("class Account(Model):", "def save(self):") == ({}, {})
    assert adapt("h = hashlib.sha1(data)\n", "def test_v1(self):", "def test_v2(self):") == "h = hashlib.sha1(data)\n"
    text = "class Repo:\n    def save(self,\n             \n        return 1\n"
    at = text.index("             ") + 13
    assert all("x" not in h for _, h in Hole.in_text(text, at, at).headers)


def test_a_word_of_the_holes_file_is_not_renamed_to_one_it_lacks():
    line = "    ok = self.request_validator.check(request_token)\n"
    src, dst = "def validate_request_token(self):", "def validate_access_token(self):"
    assert adapt(line, src, dst) == "    ok = self.access_validator.check(access_token)\n"
    known = {"request_validator", "check", "ok", "self", "access_token"}
    assert adapt(line, src, dst, known) == "    ok = self.request_validator.check(access_token)\n"


def test_enclosing_headers_nearest_first_with_their_continuation_lines():
    lines = ["class A:", "    x = 1", "", "    def f(self,", "          y):", "        z = 1", "        if z:",
             "            w = 2"]
    headers = enclosing_headers(lines)
    assert headers == ((4, "def f(self, y):"), (0, "class A:"))
    assert header_for(headers, 8) == "def f(self, y):" and header_for(headers, 4) == "class A:"
    assert header_for(headers, 0) == "" and enclosing_headers(["x = 1", "y = 2"]) == ()
    black = ["class A:", "    def f(", "        self, y,", "    ):", "        z = 1"]  # closed on its own line
    assert enclosing_headers(black) == ((4, "def f( self, y, ):"), (0, "class A:"))
    assert Hole.in_text("\n".join(lines) + "\n        <\n", 0, 0).headers == ()  # at the top: nothing above
    text = "\n".join(lines) + "\n        return z\n"
    start = text.index("        return")
    assert Hole.in_text(text, start, len(text)).headers == headers


SIBLINGS = '''class Endpoint:
    @property
    def default_grant_type(self):
        return self._default_grant_type

    @property
    def default_grant_type_handler(self):
        return self.grant_types.get(self.default_grant_type)

    @property
    def default_token_type(self):
        return self._default_token_type
'''
HOLE = SIBLINGS.replace("grant_type", "response_type").replace("grant_types", "response_types")
WANT = "        return self.response_types.get(self.default_response_type)\n"


def test_retrieval_renames_a_draft_from_a_sibling_place(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    (root / "token.py").write_text(SIBLINGS)
    secret = "        return self.response_types.get(self.zq7x_only_in_the_span)\n"
    text = HOLE.replace(WANT, secret)
    (root / "authorization.py").write_text(text)
    start = text.index(secret)
    idx = LineIndex()
    idx.add(root / "token.py", SIBLINGS)
    idx.build()
    hole = Hole.in_text(text, start, start + len(secret))
    renamed, raw = idx.search(hole, k=1), idx.search(hole, k=1, rename=False)
    assert raw[0].text == "        return self.grant_types.get(self.default_grant_type)\n"
    assert renamed[0].text == WANT and renamed[0].score == raw[0].score
    assert "zq7x" not in "".join(d.text for d in idx.search(hole, k=8))  # the span's own text never comes back


def test_the_baseline_of_eval_repo_is_never_renamed(tmp_path, monkeypatch):
    # RepoCoder's retriever is measured as it is: `jaccard` drafts keep their names; `retrieval` renames.
    from evals.repo_tasks import RepoTask, run_tasks

    root = tmp_path / "proj"
    root.mkdir()
    (root / "token.py").write_text(SIBLINGS)
    (root / "authorization.py").write_text(HOLE)
    line = HOLE.split("\n").index(WANT.rstrip("\n"))
    task = RepoTask("authorization.py:1", "authorization.py", line, line + 1, WANT)
    calls, real = [], RepoContext.drafts

    def drafts(self, *args, **kw):
        calls.append((kw.get("match", "lines"), kw.get("rename", True)))
        return real(self, *args, **kw)

    monkeypatch.setattr(RepoContext, "drafts", drafts)
    rec = run_tasks(root, [task], ["jaccard", "retrieval"])["records"][0]
    assert sorted(calls) == [("jaccard", False), ("lines", True)]
    assert rec["retrieval"]["exact"] and rec["retrieval"]["text"] == WANT and not rec["jaccard"]["exact"]
