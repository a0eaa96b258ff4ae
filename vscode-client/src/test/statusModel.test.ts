import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { displayKind, elapsedOf, formatLatency, renderStatus, serverStatus } from "../statusModel";

describe("renderStatus", () => {
  it("shows the last latency when ready", () => {
    const v = renderStatus({ kind: "ready", lastLatencyMs: 412.4, lastKind: "inline completion" });
    assert.equal(v.text, "$(sparkle) diffucode 412 ms");
    assert.match(v.tooltip, /last inline completion: 412 ms/);
    assert.equal(v.error, false);
  });
  it("spins while busy, loading or starting", () => {
    for (const kind of ["busy", "loading", "starting"] as const) assert.match(renderStatus({ kind, lastLatencyMs: 5 }).text, /^\$\(loading~spin\) diffucode$/);
    assert.match(renderStatus({ kind: "busy", pending: 3 }).tooltip, /3 requests in flight/);
  });
  it("marks errors", () => {
    const v = renderStatus({ kind: "error", detail: "model failed to load: boom" });
    assert.equal(v.error, true);
    assert.match(v.tooltip, /boom/);
  });
});

describe("displayKind", () => {
  it("is busy while requests run on a ready server", () => {
    assert.equal(displayKind("ready", 2), "busy");
    assert.equal(displayKind("ready", 0), "ready");
  });
  it("keeps every other state while requests run", () => {
    for (const kind of ["error", "loading", "starting", "stopped"] as const) assert.equal(displayKind(kind, 1), kind);
  });
  it("renders a ready server with requests in flight as busy, and an error as an error", () => {
    assert.match(renderStatus({ kind: "ready", pending: 1 }).text, /loading~spin/);
    assert.equal(renderStatus({ kind: "error", pending: 1 }).error, true);
  });
});

describe("serverStatus", () => {
  it("maps the server's phase", () => {
    assert.deepEqual(serverStatus({ phase: "starting", detail: "d" }), { kind: "starting", detail: "d" });
    assert.deepEqual(serverStatus({ phase: "stopped" }), { kind: "stopped", detail: undefined });
    assert.deepEqual(serverStatus({ phase: "failed", failure: "not found", loadError: null }), { kind: "error", detail: "not found" });
  });
  it("turns red on a model load error and back to ready when it is gone", () => {
    assert.deepEqual(serverStatus({ phase: "running", loadError: "no such model", detail: "m" }), { kind: "error", detail: "model failed to load: no such model" });
    assert.deepEqual(serverStatus({ phase: "running", loadError: null, detail: "m" }), { kind: "ready", detail: "m" });
  });
  it("shows loading while the server's loading-model progress is open", () => {
    assert.equal(serverStatus({ phase: "running", loading: true }).kind, "loading");
    assert.equal(serverStatus({ phase: "running", loading: true, loadError: "x" }).kind, "error");
    assert.equal(serverStatus({ phase: "starting", loading: true }).kind, "starting");
  });
  it("a load error does not hide a stopped or failed server", () => {
    assert.equal(serverStatus({ phase: "stopped", loadError: "x" }).kind, "stopped");
    assert.equal(serverStatus({ phase: "failed", failure: "crashed", loadError: "x" }).detail, "crashed");
  });
});

describe("formatLatency / elapsedOf", () => {
  it("formats", () => {
    assert.equal(formatLatency(0), "0 ms");
    assert.equal(formatLatency(999.6), "1000 ms");
    assert.equal(formatLatency(1234), "1.2 s");
    assert.equal(formatLatency(65000), "65 s");
    assert.equal(formatLatency(NaN), "");
  });
  it("reads elapsedMs from a diffucode/infill answer", () => {
    assert.equal(elapsedOf({ elapsedMs: 812.4 }), 812.4);
    assert.equal(elapsedOf({ elapsedMs: "1" }), undefined);
    assert.equal(elapsedOf(null), undefined);
  });
});
