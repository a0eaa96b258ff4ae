import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { elapsedOf, formatLatency, renderStatus } from "../statusModel";

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
