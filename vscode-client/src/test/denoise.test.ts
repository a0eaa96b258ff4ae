import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { countMasked, describeStep, displayText, parseStep, planDenoise } from "../denoise";

const NB = "\u00a0";
function doc(text: string) {
  const lines = text.split("\n");
  return { len: (l: number) => lines[l].length, count: lines.length };
}
const r = (a: number, b: number, c: number, d: number) => ({ start: { line: a, character: b }, end: { line: c, character: d } });

describe("planDenoise", () => {
  const d = doc("def f(x):\n    y = x * 2\n    return y\n\nprint(f(1))");

  it("lays a one-line hole over a one-line range", () => {
    const plan = planDenoise(r(1, 8, 1, 13), ["x ░░░"], d.len, d.count);
    assert.deepEqual(plan.faded, [r(1, 8, 1, 13)]);
    assert.deepEqual(plan.previews, [{ at: { line: 1, character: 8 }, text: `x${NB}░░░`, masked: 3 }]);
  });

  it("lays a multi-line hole line by line over whole selected lines", () => {
    const plan = planDenoise(r(1, 0, 3, 0), ["    z = ░░\n    return ░"], d.len, d.count);
    assert.deepEqual(plan.faded, [r(1, 0, 1, 13), r(2, 0, 2, 12)]);
    assert.deepEqual(
      plan.previews.map((p) => [p.at.line, p.at.character, p.text, p.masked]),
      [
        [1, 0, `${NB.repeat(4)}z${NB}=${NB}░░`, 2],
        [2, 0, `${NB.repeat(4)}return${NB}░`, 1],
      ],
    );
  });

  it("joins extra lines of the text onto the last range line", () => {
    const plan = planDenoise(r(0, 4, 0, 5), ["a\nb\nc"], d.len, d.count);
    assert.equal(plan.previews.length, 1);
    assert.equal(plan.previews[0].text, `a${NB}⏎${NB}b${NB}⏎${NB}c`);
  });

  it("only fades range lines the text does not reach", () => {
    const plan = planDenoise(r(1, 0, 2, 12), ["░░"], d.len, d.count);
    assert.equal(plan.faded.length, 2);
    assert.deepEqual(plan.previews.map((p) => p.at.line), [1]);
  });

  it("draws an insertion (empty range) at its point, with nothing faded", () => {
    const plan = planDenoise(r(3, 0, 3, 0), ["x = ░\ny = 2\n"], d.len, d.count);
    assert.deepEqual(plan.faded, []);
    assert.deepEqual(plan.previews, [{ at: { line: 3, character: 0 }, text: `x${NB}=${NB}░${NB}⏎${NB}y${NB}=${NB}2`, masked: 1 }]);
  });

  it("drops a trailing newline of the text", () => {
    const plan = planDenoise(r(1, 0, 2, 0), ["    y = ░\n"], d.len, d.count);
    assert.deepEqual(plan.previews.map((p) => p.text), [`${NB.repeat(4)}y${NB}=${NB}░`]);
  });

  it("clamps a range past the end of the document", () => {
    const plan = planDenoise(r(4, 3, 99, 5), ["░"], d.len, d.count);
    assert.deepEqual(plan.faded, [r(4, 3, 4, 11)]);
    assert.deepEqual(plan.previews[0].at, { line: 4, character: 3 });
  });

  it("handles a reversed range and an empty document", () => {
    assert.deepEqual(planDenoise(r(2, 4, 1, 0), ["a"], d.len, d.count).faded, []);
    assert.deepEqual(planDenoise(r(0, 0, 0, 0), ["a"], () => 0, 0).previews[0].at, { line: 0, character: 0 });
  });

  it("joins several holes and truncates very long lines", () => {
    const plan = planDenoise(r(0, 0, 0, 3), ["ab", "cd"], d.len, d.count, 3);
    assert.equal(plan.previews[0].text, "abc…");
  });

  it("shows tokens appearing in parallel as the steps go", () => {
    const steps = ["░░░░░░", "░ ░░ ░", "x ░░ 1", "x + 1"].map((t) => planDenoise(r(1, 8, 1, 13), [t], d.len, d.count).previews[0].masked);
    assert.deepEqual(steps, [6, 4, 2, 0]);
  });
});

describe("displayText", () => {
  it("keeps indentation and drops control characters", () => assert.equal(displayText("\tif x:\u0007 y"), `${NB.repeat(4)}if${NB}x:${NB}y`));
  it("counts masks", () => assert.equal(countMasked("a░b░░"), 3));
});

describe("parseStep", () => {
  const ok = { uri: "file:///a.py", version: 3, jobId: 7, mode: "infill", range: r(0, 0, 1, 0), step: 2, maskedLeft: 5, texts: ["x░"] };
  it("accepts the server's notification", () => {
    assert.deepEqual(parseStep(ok), ok);
    assert.equal(describeStep(ok), "step 2 · 5 masked");
  });
  it("fills optional fields", () => {
    const p = parseStep({ uri: "u", version: 1, range: r(0, 0, 0, 0), texts: [] });
    assert.deepEqual(p && [p.jobId, p.mode, p.step, p.maskedLeft], [0, "infill", 0, 0]);
  });
  it("rejects malformed params", () => {
    const bad = [null, 1, "x", { ...ok, uri: 1 }, { ...ok, version: "1" }, { ...ok, range: { start: {} } }, { ...ok, texts: [1] }, { ...ok, texts: "a" }];
    for (const params of bad) {
      assert.equal(parseStep(params), null, JSON.stringify(params));
    }
  });
});
