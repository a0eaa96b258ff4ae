// What the status bar item says. Pure logic (no `vscode` import).

export type StatusKind = "starting" | "loading" | "ready" | "busy" | "error" | "stopped";

export interface StatusState {
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

export function renderStatus(s: StatusState): StatusView {
  const latency = s.lastLatencyMs !== undefined ? formatLatency(s.lastLatencyMs) : "";
  let text = `${ICONS[s.kind]} diffucode`;
  if (s.kind === "ready" && latency) text += ` ${latency}`;
  const lines = [`diffucode: ${WORDS[s.kind]}`];
  if (s.pending && s.pending > 1) lines.push(`${s.pending} requests in flight`);
  if (latency) lines.push(`last ${s.lastKind ?? "request"}: ${latency}`);
  if (s.detail) lines.push(s.detail);
  lines.push("Click for the diffucode menu");
  return { text, tooltip: lines.join("\n"), error: s.kind === "error" };
}

/** Elapsed time of a diffucode/infill answer, if it carries one. */
export function elapsedOf(result: unknown): number | undefined {
  if (typeof result !== "object" || result === null) return undefined;
  const ms = (result as { elapsedMs?: unknown }).elapsedMs;
  return typeof ms === "number" && Number.isFinite(ms) ? ms : undefined;
}
