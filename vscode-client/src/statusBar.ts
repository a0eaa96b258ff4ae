// The status bar item: starting / loading / ready (last latency) / busy / error.
import * as vscode from "vscode";
import { renderStatus, StatusKind, StatusState } from "./statusModel";

export class StatusBar implements vscode.Disposable {
  private readonly item: vscode.StatusBarItem;
  private state: StatusState = { kind: "starting", pending: 0 };

  constructor(command: string) {
    this.item = vscode.window.createStatusBarItem("diffucode.status", vscode.StatusBarAlignment.Right, 100);
    this.item.name = "diffucode";
    this.item.command = command;
    this.render();
    this.item.show();
  }

  get kind(): StatusKind {
    return this.state.kind;
  }

  set(kind: StatusKind, detail?: string): void {
    this.state = { ...this.state, kind, detail: detail ?? (kind === this.state.kind ? this.state.detail : undefined) };
    if (kind !== "busy") this.state.pending = 0;
    this.render();
  }

  /** A request started; returns a function to call when it ends (with its latency if known). */
  begin(): (latencyMs?: number, what?: string) => void {
    if (this.state.kind === "error" || this.state.kind === "stopped" || this.state.kind === "starting") return () => undefined;
    const previous = this.state.kind === "busy" ? "ready" : this.state.kind;
    this.state = { ...this.state, kind: "busy", pending: (this.state.pending ?? 0) + 1 };
    this.render();
    let done = false;
    return (latencyMs?: number, what?: string) => {
      if (done) return;
      done = true;
      if (this.state.kind !== "busy") return;
      const pending = Math.max(0, (this.state.pending ?? 1) - 1);
      this.state = {
        ...this.state,
        pending,
        kind: pending > 0 ? "busy" : previous === "loading" ? "ready" : previous,
        lastLatencyMs: latencyMs ?? this.state.lastLatencyMs,
        lastKind: latencyMs !== undefined ? what : this.state.lastKind,
      };
      this.render();
    };
  }

  private render(): void {
    const view = renderStatus(this.state);
    this.item.text = view.text;
    this.item.tooltip = view.tooltip;
    this.item.backgroundColor = view.error ? new vscode.ThemeColor("statusBarItem.errorBackground") : undefined;
  }

  dispose(): void {
    this.item.dispose();
  }
}
