// Ordering and bounding the server's start / stop / restart. Pure logic (no `vscode` import).

/** Runs tasks one after another, in call order; a failing task does not stop the ones after it. */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.tail.then(task);
    this.tail = result.catch(() => undefined);
    return result;
  }
}

/** A start attempt did not finish in time. */
export class StartTimeout extends Error {
  constructor(readonly ms: number) {
    super(`no answer within ${Math.round(ms / 1000)} s`);
    this.name = "StartTimeout";
  }
}

/** A start attempt was given up because a restart or stop replaced it. */
export class StartAborted extends Error {
  constructor() {
    super("the start was superseded");
    this.name = "StartAborted";
  }
}

/**
 * One start attempt: `guard` bounds each step it waits on by a timeout, and `abort` makes every
 * pending (and later) `guard` reject at once, so a restart never waits on a start that hangs.
 */
export class Attempt {
  private readonly aborters = new Set<(err: Error) => void>();
  private abortedFlag = false;

  get aborted(): boolean {
    return this.abortedFlag;
  }

  abort(): void {
    this.abortedFlag = true;
    for (const reject of [...this.aborters]) reject(new StartAborted());
    this.aborters.clear();
  }

  guard<T>(promise: Promise<T>, timeoutMs: number): Promise<T> {
    if (this.abortedFlag) {
      promise.catch(() => undefined); // whoever gives up on it must not leave an unhandled rejection
      return Promise.reject(new StartAborted());
    }
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const finish = (fn: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.aborters.delete(abort);
        fn();
      };
      const abort = (err: Error) => finish(() => reject(err));
      const timer = setTimeout(() => finish(() => reject(new StartTimeout(timeoutMs))), timeoutMs);
      this.aborters.add(abort);
      promise.then(
        (value) => finish(() => resolve(value)),
        (err) => finish(() => reject(err)),
      );
    });
  }
}
