import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Attempt, SerialQueue, StartAborted, StartTimeout } from "../lifecycle";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const never = () => new Promise<never>(() => undefined);

describe("SerialQueue", () => {
  it("runs tasks one at a time, in call order", async () => {
    const q = new SerialQueue();
    const log: string[] = [];
    const task = (name: string, ms: number) => async () => {
      log.push(`${name}+`);
      await sleep(ms);
      log.push(`${name}-`);
      return name;
    };
    const results = await Promise.all([q.run(task("stop", 20)), q.run(task("start", 5)), q.run(task("restart", 1))]);
    assert.deepEqual(results, ["stop", "start", "restart"]);
    assert.deepEqual(log, ["stop+", "stop-", "start+", "start-", "restart+", "restart-"]);
  });
  it("goes on after a failing task", async () => {
    const q = new SerialQueue();
    const failing = q.run(async () => {
      throw new Error("boom");
    });
    await assert.rejects(failing, /boom/);
    assert.equal(await q.run(async () => 1), 1);
  });
});

describe("Attempt", () => {
  it("passes a result through", async () => assert.equal(await new Attempt().guard(Promise.resolve(3), 1000), 3));
  it("passes a rejection through", async () => assert.rejects(new Attempt().guard(Promise.reject(new Error("exited")), 1000), /exited/));
  it("times out a step that never finishes", async () => {
    const err = await new Attempt().guard(never(), 20).catch((e) => e);
    assert.ok(err instanceof StartTimeout);
    assert.equal(err.ms, 20);
  });
  it("abort rejects a pending step at once, and every later one", async () => {
    const a = new Attempt();
    const pending = a.guard(never(), 60_000);
    a.abort();
    assert.ok((await pending.catch((e) => e)) instanceof StartAborted);
    assert.equal(a.aborted, true);
    assert.ok((await a.guard(Promise.resolve(1), 1000).catch((e) => e)) instanceof StartAborted);
  });
  it("a queued restart does not wait for a start that hangs", async () => {
    const q = new SerialQueue();
    const attempt = new Attempt();
    const start = q.run(() => attempt.guard(never(), 60_000));
    const restart = q.run(async () => "restarted");
    attempt.abort();
    await assert.rejects(start, StartAborted);
    assert.equal(await restart, "restarted");
  });
});
