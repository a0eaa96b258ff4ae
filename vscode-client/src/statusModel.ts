// What the status bar item says, and which state it shows for the server's state. Pure logic (no `vscode` import).

export type StatusKind = "starting" | "loading" | "ready" | "busy" | "error" | "stopped";

export interface StatusState {
  /** The server's state; shown as "busy" while requests are in flight and it is ready. */
  kind: StatusKind;
  /** Latency of the last finished request, in ms. */
  lastLatencyMs?: number;
  /** What the last latency was for ("inline", "infill", ...). */
  lastKind?: string;
  /** Error text, model name, ... for the tooltip. */
  detail?: string;
  /** Requests in flight. */
  pending?: number;
}

export interface StatusView {
  text: string;
  tooltip: string;
  error: boolean;
}

const ICONS: Record<StatusKind, string> = {
  starting: "$(loading~spin)",
  loading: "$(loading~spin)",
  busy: "$(loading~spin)",
  ready: "$(sparkle)",
  error: "$(error)",
  stopped: "$(circle-slash)",
};

const WORDS: Record<StatusKind, string> = {
  starting: "starting the language server",
  loading: "loading the model",
  busy: "generating",
  ready: "ready",
  error: "error",
  stopped: "server stopped",
};

export function formatLatency(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return "";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
}

/** What the item shows: "busy" while requests are in flight on a ready server, else the server's state. */
export function displayKind(kind: StatusKind, pending = 0): StatusKind {
  return pending > 0 && kind === "ready" ? "busy" : kind;
}

export type ServerPhase = "starting" | "running" | "stopped" | "failed";

/** What ServerManager knows about the server, kept apart from what the status bar shows. */
export interface ServerView {
  phase: ServerPhase;
  /** Why the server failed (phase "failed"). */
  failure?: string;
  /** A "loading model" progress from the server is open. */
  loading?: boolean;
  /** The model load error `diffucode/status` reported (null: none). */
  loadError?: string | null;
  /** Tooltip detail: model and device, the command, ... */
  detail?: string;
}

/**
 * The status bar state for a server state: a failed start or a model load error is red; a running
 * server whose model loads (the server's "loading model" progress) is "loading"; a running server
 * without a load error is ready again.
 */
export function serverStatus(v: ServerView): { kind: StatusKind; detail?: string } {
  switch (v.phase) {
    case "failed":
      return { kind: "error", detail: v.failure ?? v.detail };
    case "starting":
      return { kind: "starting", detail: v.detail };
    case "stopped":
      return { kind: "stopped", detail: v.detail };
    default:
      if (v.loadError) return { kind: "error", detail: `model failed to load: ${v.loadError}` };
      if (v.loading) return { kind: "loading", detail: v.detail };
      return { kind: "ready", detail: v.detail };
  }
}

export function renderStatus(s: StatusState): StatusView {
  const latency = s.lastLatencyMs !== undefined ? formatLatency(s.lastLatencyMs) : "";
  const kind = displayKind(s.kind, s.pending);
  let text = `${ICONS[kind]} diffucode`;
  if (kind === "ready" && latency) text += ` ${latency}`;
  const lines = [`diffucode: ${WORDS[kind]}`];
  if (s.pending && s.pending > 1) lines.push(`${s.pending} requests in flight`);
  if (latency) lines.push(`last ${s.lastKind ?? "request"}: ${latency}`);
  if (s.detail) lines.push(s.detail);
  lines.push("Click for the diffucode menu");
  return { text, tooltip: lines.join("\n"), error: kind === "error" };
}

/** Elapsed time of a diffucode/infill answer, if it carries one. */
export function elapsedOf(result: unknown): number | undefined {
  if (typeof result !== "object" || result === null) return undefined;
  const ms = (result as { elapsedMs?: unknown }).elapsedMs;
  return typeof ms === "number" && Number.isFinite(ms) ? ms : undefined;
}
