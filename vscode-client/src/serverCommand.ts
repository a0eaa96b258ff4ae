// Which command line starts the language server. Pure logic (no `vscode` import): the extension
// passes in what it knows about PATH, the workspace and the Python extension's interpreter.

export type CommandSource = "setting" | "path" | "python-extension" | "python3";

export interface ServerCommand {
  command: string;
  args: string[];
  source: CommandSource;
}

export interface ResolveContext {
  /** Absolute path of an executable on PATH, or undefined. */
  findOnPath(name: string): string | undefined;
  /** The Python extension's selected interpreter as a command prefix (`["/venv/bin/python"]`), if any. */
  pythonInterpreter?: string[];
  workspaceFolder?: string;
  home?: string;
}

/** Split a command line the way a POSIX shell splits words: quotes and backslashes, no expansion. */
export function splitCommandLine(line: string): string[] {
  const words: string[] = [];
  let cur = "";
  let inWord = false;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (quote === "'") {
      if (ch === "'") quote = null;
      else cur += ch;
    } else if (quote === '"') {
      if (ch === '"') quote = null;
      else if (ch === "\\" && i + 1 < line.length && '"\\$`'.includes(line[i + 1])) cur += line[++i];
      else cur += ch;
    } else if (ch === "'" || ch === '"') {
      quote = ch;
      inWord = true;
    } else if (ch === "\\" && i + 1 < line.length) {
      cur += line[++i];
      inWord = true;
    } else if (/\s/.test(ch)) {
      if (inWord) words.push(cur);
      cur = "";
      inWord = false;
    } else {
      cur += ch;
      inWord = true;
    }
  }
  if (quote) throw new Error(`unterminated ${quote} quote in ${JSON.stringify(line)}`);
  if (inWord) words.push(cur);
  return words;
}

/** Expand `${workspaceFolder}`, `${userHome}`, `${env:NAME}` and a leading `~`. */
export function expandWord(word: string, ctx: Pick<ResolveContext, "workspaceFolder" | "home">, env: Record<string, string | undefined> = {}): string {
  let out = word;
  if (ctx.home && (out === "~" || out.startsWith("~/"))) out = ctx.home + out.slice(1);
  return out.replace(/\$\{(workspaceFolder|userHome|env:([A-Za-z_][A-Za-z0-9_]*))\}/g, (m, name: string, envName?: string) => {
    if (envName) return env[envName] ?? "";
    if (name === "workspaceFolder") return ctx.workspaceFolder ?? m;
    return ctx.home ?? m;
  });
}

/** The setting as a list of words, or null when it is unset (empty string, empty list, null). */
export function parseSetting(setting: unknown): string[] | null {
  if (setting == null) return null;
  if (typeof setting === "string") {
    const words = splitCommandLine(setting.trim());
    return words.length ? words : null;
  }
  if (Array.isArray(setting)) {
    if (!setting.every((w) => typeof w === "string")) throw new Error("diffucode.serverCommand must be a list of strings");
    const words = setting.filter((w) => w !== "");
    return words.length ? words : null;
  }
  throw new Error(`diffucode.serverCommand must be a string or a list of strings, got ${typeof setting}`);
}

/**
 * The server's command line: the `diffucode.serverCommand` setting if set, else `diffucode lsp` from
 * PATH, else `<interpreter> -m diffucode lsp` with the Python extension's interpreter, else
 * `python3 -m diffucode lsp`.
 */
export function resolveServerCommand(setting: unknown, ctx: ResolveContext, env: Record<string, string | undefined> = {}): ServerCommand {
  const words = parseSetting(setting);
  if (words) {
    const [command, ...args] = words.map((w) => expandWord(w, ctx, env));
    return { command, args, source: "setting" };
  }
  const onPath = ctx.findOnPath("diffucode");
  if (onPath) return { command: onPath, args: ["lsp"], source: "path" };
  const py = ctx.pythonInterpreter?.filter((w) => w !== "");
  if (py && py.length) return { command: py[0], args: [...py.slice(1), "-m", "diffucode", "lsp"], source: "python-extension" };
  return { command: "python3", args: ["-m", "diffucode", "lsp"], source: "python3" };
}

/** Find an executable on a PATH string; `isExecutable` is injected so this stays testable. */
export function findOnPath(
  name: string,
  pathVar: string | undefined,
  isExecutable: (file: string) => boolean,
  platform: string = process.platform,
  pathExt: string | undefined = undefined,
): string | undefined {
  const sep = platform === "win32" ? ";" : ":";
  const slash = platform === "win32" ? "\\" : "/";
  if (name.includes("/") || (platform === "win32" && name.includes("\\"))) return isExecutable(name) ? name : undefined;
  const exts = platform === "win32" ? ["", ...(pathExt ?? ".EXE;.CMD;.BAT").split(";").filter(Boolean)] : [""];
  for (const dir of (pathVar ?? "").split(sep)) {
    if (!dir) continue;
    for (const ext of exts) {
      const file = dir.endsWith(slash) ? dir + name + ext : dir + slash + name + ext;
      if (isExecutable(file)) return file;
    }
  }
  return undefined;
}

/** How a command line reads in messages: words with spaces are quoted. */
export function formatCommand(cmd: Pick<ServerCommand, "command" | "args">): string {
  return [cmd.command, ...cmd.args].map((w) => (/^[\w@%+=:,./~-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`)).join(" ");
}
