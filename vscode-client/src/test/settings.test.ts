import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, it } from "node:test";
import { CLIENT_KEYS, fromObject, isUserSet, needsRestart, SERVER_KEYS, settingsUpdate, toServerSettings, userSettings } from "../settings";

const ROOT = path.join(__dirname, "..", "..");
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8"));
const props: Record<string, { default?: unknown; type?: unknown }> = pkg.contributes.configuration.properties;

describe("toServerSettings", () => {
  it("passes the server keys and drops client-only and unknown keys", () => {
    const values: Record<string, unknown> = { model: "/m", steps: 8, serverCommand: ["x"], showDenoising: false, trace: { server: "off" }, bogus: 1 };
    const out = toServerSettings((k) => values[k]);
    assert.deepEqual(out, { model: "/m", steps: 8 });
  });
  it("maps empty strings to null where null means unset", () => {
    assert.deepEqual(fromObject({ model: "  ", language: "", device: "" }), { model: null, language: null, device: "" });
  });
  it("keeps null (resets a setting on the server)", () => assert.deepEqual(fromObject({ steps: null, topK: null }), { steps: null, topK: null }));
  it("always sends inline as an object", () => {
    assert.deepEqual(fromObject({ inline: null }), { inline: {} });
    assert.deepEqual(fromObject({ inline: [1] }), { inline: {} });
    assert.deepEqual(fromObject({ inline: { steps: 4 } }), { inline: { steps: 4 } });
  });
  it("copies inline so later changes do not leak into the sent object", () => {
    const inline = { steps: 4 };
    const out = fromObject({ inline });
    inline.steps = 9;
    assert.deepEqual(out.inline, { steps: 4 });
  });
  it("maps an empty searchLengths list to null", () => assert.deepEqual(fromObject({ searchLengths: [] }), { searchLengths: null }));
  it("accepts a non-object section", () => assert.deepEqual(fromObject(undefined), {}));
  it("sends every contributed default", () => {
    const defaults = toServerSettings((k) => props[`diffucode.${k}`]?.default);
    assert.equal(Object.keys(defaults).length, SERVER_KEYS.length);
    assert.equal(defaults.validate, true);
    assert.equal(defaults.debounceMs, 150);
  });
});

describe("isUserSet", () => {
  it("is false for a key only at its default", () => {
    assert.equal(isUserSet(undefined), false);
    assert.equal(isUserSet({ defaultValue: "cpu" }), false);
  });
  it("is true for a value at any level, null included", () => {
    assert.equal(isUserSet({ defaultValue: "cpu", globalValue: "cuda" }), true);
    assert.equal(isUserSet({ workspaceValue: null }), true);
    assert.equal(isUserSet({ workspaceFolderValue: 3 }), true);
    assert.equal(isUserSet({ globalLanguageValue: 1 }), true);
    assert.equal(isUserSet({ workspaceLanguageValue: 1 }), true);
    assert.equal(isUserSet({ workspaceFolderLanguageValue: 1 }), true);
  });
});

describe("userSettings", () => {
  const effective: Record<string, unknown> = { model: null, device: "cpu", steps: 8, inline: { steps: 4 }, serverCommand: ["x"] };
  it("sends only the keys the user set, so the server keeps its own defaults (--model, --device)", () => {
    const set = new Set(["steps", "inline", "serverCommand"]);
    assert.deepEqual(
      userSettings((k) => effective[k], (k) => set.has(k)),
      { steps: 8, inline: { steps: 4 } },
    );
  });
  it("sends nothing when nothing is set", () => assert.deepEqual(userSettings((k) => effective[k], () => false), {}));
  it("normalizes what it sends", () => assert.deepEqual(userSettings(() => "", (k) => k === "model"), { model: null }));
});

describe("settingsUpdate", () => {
  const defaults = toServerSettings((k) => props[`diffucode.${k}`]?.default);
  it("sends the user's settings and remembers their keys", () => {
    const { payload, sent } = settingsUpdate({ device: "cuda", steps: 8 }, [], defaults);
    assert.deepEqual(payload, { device: "cuda", steps: 8 });
    assert.deepEqual([...sent].sort(), ["device", "steps"]);
  });
  it("resets a key the user removed to its default, once", () => {
    const first = settingsUpdate({ steps: 8 }, ["device", "steps"], defaults);
    assert.deepEqual(first.payload, { device: "cpu", steps: 8 });
    assert.deepEqual([...first.sent], ["steps"]);
    const second = settingsUpdate({ steps: 8 }, first.sent, defaults);
    assert.deepEqual(second.payload, { steps: 8 });
  });
  it("resets to null defaults too", () => assert.deepEqual(settingsUpdate({}, ["model", "topK"], defaults).payload, { model: null, topK: null }));
  it("ignores remembered keys that are not server keys", () => assert.deepEqual(settingsUpdate({}, ["bogus"], defaults).payload, {}));
});

describe("needsRestart", () => {
  it("only for the server command", () => {
    assert.equal(needsRestart((k) => k === "serverCommand"), true);
    assert.equal(needsRestart((k) => k === "model"), false);
  });
});

describe("package.json", () => {
  it("contributes exactly the server and client keys", () => {
    const contributed = Object.keys(props).map((k) => k.replace(/^diffucode\./, "")).sort();
    const expected = [...SERVER_KEYS, ...CLIENT_KEYS.filter((k) => k !== "trace"), "trace.server"].sort();
    assert.deepEqual(contributed, expected);
  });
  it("does not reuse the server's command ids", () => {
    const ids: string[] = pkg.contributes.commands.map((c: { command: string }) => c.command);
    for (const serverId of ["diffucode.infillSelection", "diffucode.rewriteSelection", "diffucode.repairSelection"]) assert.ok(!ids.includes(serverId), serverId);
    for (const id of ids) assert.match(id, /^diffucode\.client\./);
  });
  it("keeps a workspace's serverCommand out of untrusted workspaces", () => {
    assert.equal(pkg.capabilities.untrustedWorkspaces.supported, "limited");
    assert.deepEqual(pkg.capabilities.untrustedWorkspaces.restrictedConfigurations, ["diffucode.serverCommand"]);
  });
  it("activates on every contributed command", () => {
    for (const c of pkg.contributes.commands) assert.ok(pkg.activationEvents.includes(`onCommand:${c.command}`), c.command);
  });

  const docs = path.join(ROOT, "..", "docs", "lsp.md");
  it("has the server's defaults (docs/lsp.md settings table)", { skip: !fs.existsSync(docs) && "docs/lsp.md not found" }, () => {
    const rows = fs
      .readFileSync(docs, "utf8")
      .split("\n")
      .map((l) => /^\| `(\w+)` \| `(.*?)` \|/.exec(l))
      .filter((m): m is RegExpExecArray => m !== null);
    assert.ok(rows.length >= 20, `only ${rows.length} rows in the settings table`);
    const documented = rows.map((m) => m[1]).sort();
    assert.deepEqual(documented, [...SERVER_KEYS].sort());
    for (const [, key, value] of rows) {
      assert.deepEqual(props[`diffucode.${key}`].default, JSON.parse(value), key);
    }
  });
});
