import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { expandWord, findOnPath, formatCommand, parseSetting, resolveRelative, resolveServerCommand, splitCommandLine } from "../serverCommand";

const none = () => undefined;

describe("splitCommandLine (POSIX)", () => {
  it("splits on whitespace", () => assert.deepEqual(splitCommandLine("  diffucode   lsp --log-level debug ", "linux"), ["diffucode", "lsp", "--log-level", "debug"]));
  it("keeps quoted words", () =>
    assert.deepEqual(splitCommandLine(`"/opt/my venv/bin/python" -m diffucode lsp --model 'a b'`, "linux"), ["/opt/my venv/bin/python", "-m", "diffucode", "lsp", "--model", "a b"]));
  it("handles backslashes and empty quotes", () => assert.deepEqual(splitCommandLine(`a\\ b "" 'c"d' "e\\"f"`, "darwin"), ["a b", "", 'c"d', 'e"f']));
  it("rejects an unterminated quote", () => assert.throws(() => splitCommandLine(`python "-m`, "linux"), /unterminated/));
});

describe("splitCommandLine (win32)", () => {
  it("keeps backslashes in paths", () =>
    assert.deepEqual(splitCommandLine(`C:\\venv\\Scripts\\diffucode.exe lsp --log-file C:\\tmp\\lsp.log`, "win32"), [
      "C:\\venv\\Scripts\\diffucode.exe",
      "lsp",
      "--log-file",
      "C:\\tmp\\lsp.log",
    ]));
  it("keeps backslashes inside double quotes", () =>
    assert.deepEqual(splitCommandLine(`"C:\\Program Files\\Python312\\python.exe" -m diffucode lsp`, "win32"), ["C:\\Program Files\\Python312\\python.exe", "-m", "diffucode", "lsp"]));
  it("reads backslashes before a quote the Windows way", () => {
    assert.deepEqual(splitCommandLine(`a\\"b`, "win32"), ['a"b']); // \" : a literal quote
    assert.deepEqual(splitCommandLine(`"C:\\dir\\\\" next`, "win32"), ["C:\\dir\\", "next"]); // \\" : a backslash, then the closing quote
  });
  it("treats single quotes as ordinary characters", () => assert.deepEqual(splitCommandLine(`C:\\O'Brien\\py.exe lsp`, "win32"), ["C:\\O'Brien\\py.exe", "lsp"]));
  it("rejects an unterminated double quote", () => assert.throws(() => splitCommandLine(`"C:\\x`, "win32"), /unterminated/));
});

describe("resolveRelative", () => {
  it("takes a relative path with a directory against the workspace folder", () => {
    assert.equal(resolveRelative(".venv/bin/diffucode", "/ws", "linux"), "/ws/.venv/bin/diffucode");
    assert.equal(resolveRelative("./bin/diffucode", "/ws", "linux"), "/ws/bin/diffucode");
    assert.equal(resolveRelative(".venv\\Scripts\\diffucode.exe", "C:\\ws", "win32"), "C:\\ws\\.venv\\Scripts\\diffucode.exe");
  });
  it("leaves absolute paths, bare names and a missing folder alone", () => {
    assert.equal(resolveRelative("/usr/bin/diffucode", "/ws", "linux"), "/usr/bin/diffucode");
    assert.equal(resolveRelative("C:\\x\\d.exe", "C:\\ws", "win32"), "C:\\x\\d.exe");
    assert.equal(resolveRelative("diffucode", "/ws", "linux"), "diffucode");
    assert.equal(resolveRelative("bin/diffucode", undefined, "linux"), "bin/diffucode");
  });
});

describe("parseSetting", () => {
  it("treats empty values as unset", () => {
    for (const v of [null, undefined, "", "   ", [], [""]]) assert.equal(parseSetting(v), null);
  });
  it("accepts a list", () => assert.deepEqual(parseSetting(["/x/diffucode", "lsp"]), ["/x/diffucode", "lsp"]));
  it("splits a string for the platform", () => {
    assert.deepEqual(parseSetting("C:\\py\\python.exe -m diffucode lsp", "win32"), ["C:\\py\\python.exe", "-m", "diffucode", "lsp"]);
    assert.deepEqual(parseSetting("C:\\py\\python.exe -m diffucode lsp", "linux"), ["C:pypython.exe", "-m", "diffucode", "lsp"]);
  });
  it("rejects other types", () => {
    assert.throws(() => parseSetting(42), /string or a list/);
    assert.throws(() => parseSetting(["a", 1]), /list of strings/);
  });
});

describe("expandWord", () => {
  const ctx = { home: "/home/u", workspaceFolder: "/ws" };
  it("expands ~ at the start only", () => {
    assert.equal(expandWord("~/venv/bin/diffucode", ctx), "/home/u/venv/bin/diffucode");
    assert.equal(expandWord("a~/b", ctx), "a~/b");
  });
  it("expands variables", () => {
    assert.equal(expandWord("${workspaceFolder}/.venv/bin/python", ctx), "/ws/.venv/bin/python");
    assert.equal(expandWord("${userHome}/m", ctx), "/home/u/m");
    assert.equal(expandWord("${env:MODEL_DIR}/x", ctx, { MODEL_DIR: "/models" }), "/models/x");
  });
  it("leaves ${workspaceFolder} alone without a folder", () => assert.equal(expandWord("${workspaceFolder}/x", {}), "${workspaceFolder}/x"));
});

describe("resolveServerCommand", () => {
  it("uses the setting first (string)", () => {
    const cmd = resolveServerCommand("~/venv/bin/python -m diffucode lsp", { findOnPath: () => "/usr/bin/diffucode", home: "/h", platform: "linux" });
    assert.deepEqual(cmd, { command: "/h/venv/bin/python", args: ["-m", "diffucode", "lsp"], source: "setting" });
  });
  it("resolves a relative command against the workspace folder", () => {
    const cmd = resolveServerCommand([".venv/bin/diffucode", "lsp"], { findOnPath: none, workspaceFolder: "/ws", platform: "linux" });
    assert.deepEqual(cmd, { command: "/ws/.venv/bin/diffucode", args: ["lsp"], source: "setting" });
    const win = resolveServerCommand(".venv\\Scripts\\diffucode.exe lsp", { findOnPath: none, workspaceFolder: "C:\\ws", platform: "win32" });
    assert.deepEqual(win, { command: "C:\\ws\\.venv\\Scripts\\diffucode.exe", args: ["lsp"], source: "setting" });
  });
  it("uses the setting first (list)", () => {
    const cmd = resolveServerCommand(["diffucode", "lsp", "--device", "cuda"], { findOnPath: none });
    assert.deepEqual(cmd, { command: "diffucode", args: ["lsp", "--device", "cuda"], source: "setting" });
  });
  it("then diffucode on PATH", () => {
    const cmd = resolveServerCommand(null, { findOnPath: (n) => (n === "diffucode" ? "/venv/bin/diffucode" : undefined), pythonInterpreter: ["/py"] });
    assert.deepEqual(cmd, { command: "/venv/bin/diffucode", args: ["lsp"], source: "path" });
  });
  it("then the Python extension's interpreter", () => {
    assert.deepEqual(resolveServerCommand("", { findOnPath: none, pythonInterpreter: ["/venv/bin/python"] }), {
      command: "/venv/bin/python",
      args: ["-m", "diffucode", "lsp"],
      source: "python-extension",
    });
    assert.deepEqual(resolveServerCommand([], { findOnPath: none, pythonInterpreter: ["conda", "run", "-n", "x", "python"] }), {
      command: "conda",
      args: ["run", "-n", "x", "python", "-m", "diffucode", "lsp"],
      source: "python-extension",
    });
  });
  it("then python3", () => {
    assert.deepEqual(resolveServerCommand(undefined, { findOnPath: none, pythonInterpreter: [] }), {
      command: "python3",
      args: ["-m", "diffucode", "lsp"],
      source: "python3",
    });
  });
});

describe("findOnPath", () => {
  const exists = (files: string[]) => (f: string) => files.includes(f);
  it("searches PATH in order", () => {
    assert.equal(findOnPath("diffucode", "/a:/b/:/c", exists(["/b/diffucode", "/c/diffucode"]), "linux"), "/b/diffucode");
    assert.equal(findOnPath("diffucode", "/a::/c", exists([]), "linux"), undefined);
    assert.equal(findOnPath("diffucode", undefined, exists([]), "linux"), undefined);
  });
  it("checks a path directly", () => {
    assert.equal(findOnPath("/x/diffucode", "/a", exists(["/x/diffucode"]), "linux"), "/x/diffucode");
    assert.equal(findOnPath("./diffucode", "/a", exists([]), "linux"), undefined);
  });
  it("tries PATHEXT on Windows", () =>
    assert.equal(findOnPath("diffucode", "C:\\a;C:\\py\\Scripts", exists(["C:\\py\\Scripts\\diffucode.EXE"]), "win32", ".COM;.EXE"), "C:\\py\\Scripts\\diffucode.EXE"));
});

describe("formatCommand", () => {
  it("quotes words that need it", () => assert.equal(formatCommand({ command: "/my venv/python", args: ["-m", "diffucode", "lsp", "it's"] }), `'/my venv/python' -m diffucode lsp 'it'\\''s'`));
});
