// The status bar item: starting / loading the model / ready (last latency) / busy / error / stopped.
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

  /** The server's state as last set (not "busy": requests in flight are counted separately). */
  get kind(): StatusKind {
    return this.state.kind;
  }

  set(kind: StatusKind, detail?: string): void {
    if (kind === this.state.kind && detail === this.state.detail) return;
    this.state = { ...this.state, kind, detail };
    this.render();
  }

  /** A request started; returns a function to call when it ends (with its latency if known). */
  begin(): (latencyMs?: number, what?: string) => void {
    this.state = { ...this.state, pending: (this.state.pending ?? 0) + 1 };
    this.render();
    let done = false;
    return (latencyMs?: number, what?: string) => {
      if (done) return;
      done = true;
      this.state = {
        ...this.state,
        pending: Math.max(0, (this.state.pending ?? 1) - 1),
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
