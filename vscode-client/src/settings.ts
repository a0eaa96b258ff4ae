// The `diffucode.*` VS Code settings → the server's settings object. Pure logic (no `vscode` import).

/** Settings the server understands (docs/lsp.md), in camelCase, as the extension contributes them. */
export const SERVER_KEYS = [
  "model",
  "device",
  "quantize",
  "compile",
  "threads",
  "debounceMs",
  "inlineEnabled",
  "inline",
  "stream",
  "preload",
  "rewriteFraction",
  "repairBelow",
  "snapSelection",
  "windowChars",
  "maxFileChars",
  "steps",
  "strategy",
  "schedule",
  "temperature",
  "topK",
  "topP",
  "threshold",
  "entropyBound",
  "earlyStop",
  "blockLength",
  "remaskBelow",
  "positionTemperature",
  "cfgScale",
  "candidates",
  "retries",
  "seed",
  "maxNewTokens",
  "lengthMode",
  "length",
  "searchLengths",
  "validate",
  "language",
  "contextTokens",
  "cacheRefresh",
  "exact",
  "maxLines",
  "allowDelete",
  "context",
  "drafts",
  "refineBelow",
  "retrievalWeight",
  "minMatch",
  "contextPrompt",
] as const;

/** Settings only the extension reads; they never go to the server. */
export const CLIENT_KEYS = ["serverCommand", "showDenoising", "trace"] as const;

/** Settings where an empty string means "unset" (null on the server). */
const EMPTY_IS_NULL = new Set<string>(["model", "language"]);

export type ServerSettings = Record<string, unknown>;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Build the server's settings from a getter over the `diffucode` section (what
 * `workspace.getConfiguration("diffucode").get` returns). Keys the getter has no value for are left
 * out, so the server keeps its own default.
 */
export function toServerSettings(get: (key: string) => unknown): ServerSettings {
  const out: ServerSettings = {};
  for (const key of SERVER_KEYS) {
    let v = get(key);
    if (v === undefined) continue;
    if (typeof v === "string" && EMPTY_IS_NULL.has(key) && v.trim() === "") v = null;
    if (key === "inline") v = isPlainObject(v) ? { ...v } : {};
    if (key === "searchLengths" && Array.isArray(v) && v.length === 0) v = null;
    out[key] = v;
  }
  return out;
}

/** The same from a plain object (a `workspace/configuration` answer or a settings.json excerpt). */
export function fromObject(section: unknown): ServerSettings {
  const obj = isPlainObject(section) ? section : {};
  return toServerSettings((key) => obj[key]);
}

/** What `WorkspaceConfiguration.inspect(key)` returns (the parts that say where a value comes from). */
export interface Inspection {
  defaultValue?: unknown;
  globalValue?: unknown;
  workspaceValue?: unknown;
  workspaceFolderValue?: unknown;
  globalLanguageValue?: unknown;
  workspaceLanguageValue?: unknown;
  workspaceFolderLanguageValue?: unknown;
}

/** True when the user set the key somewhere (user, workspace or folder settings, also per language). */
export function isUserSet(inspection: Inspection | undefined): boolean {
  if (!inspection) return false;
  return [
    inspection.globalValue,
    inspection.workspaceValue,
    inspection.workspaceFolderValue,
    inspection.globalLanguageValue,
    inspection.workspaceLanguageValue,
    inspection.workspaceFolderLanguageValue,
  ].some((v) => v !== undefined);
}

/**
 * The server settings the user set, and only those: a key left at the extension's default is not
 * sent, so the server keeps its own default (e.g. its `--model` / `--device` flags).
 */
export function userSettings(get: (key: string) => unknown, isSet: (key: string) => boolean): ServerSettings {
  return toServerSettings((key) => (isSet(key) ? get(key) : undefined));
}

/**
 * What to send when the settings change: the user's settings, plus the default of every key that
 * was sent before and is no longer set (so the server resets it; the server merges updates).
 * `sent` is the set of keys to remember as sent for the next change.
 */
export function settingsUpdate(user: ServerSettings, previouslySent: Iterable<string>, defaults: ServerSettings): { payload: ServerSettings; sent: Set<string> } {
  const payload: ServerSettings = {};
  for (const key of previouslySent) {
    if (!(key in user) && key in defaults) payload[key] = defaults[key];
  }
  Object.assign(payload, user);
  return { payload, sent: new Set(Object.keys(user)) };
}

/** Keys whose change needs a new server process rather than a settings update. */
export function needsRestart(changed: (key: string) => boolean): boolean {
  return changed("serverCommand");
}
