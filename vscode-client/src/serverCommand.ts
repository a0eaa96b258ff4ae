// Which command line starts the language server. Pure logic (no `vscode` import): the extension
// passes in what it knows about PATH, the workspace and the Python extension's interpreter.
import * as path from "path";

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
  /** `process.platform` (win32 splits command lines and paths the Windows way). */
  platform?: string;
}

/**
 * Split a command line into words. POSIX (the default): the way a shell splits words, with quotes
 * and backslash escapes, no expansion. win32: backslashes are path separators and stay as they are,
 * except before a double quote (`\"` is a literal quote, `\\"` a backslash and a closing quote, as
 * in the Windows C runtime); double quotes group words, single quotes are ordinary characters.
 */
export function splitCommandLine(line: string, platform: string = process.platform): string[] {
  const windows = platform === "win32";
  const words: string[] = [];
  let cur = "";
  let inWord = false;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (quote === "'") {
      if (ch === "'") quote = null;
      else cur += ch;
    } else if (windows && ch === "\\") {
      let n = 0;
      while (line[i + n] === "\\") n++;
      if (line[i + n] === '"') {
        cur += "\\".repeat(Math.floor(n / 2));
        if (n % 2 === 1) {
          cur += '"';
          i += n; // the escaped quote is consumed
        } else {
          i += n - 1; // the quote opens or closes a quoted part
        }
      } else {
        cur += "\\".repeat(n);
        i += n - 1;
      }
      inWord = true;
    } else if (quote === '"') {
      if (ch === '"') quote = null;
      else if (ch === "\\" && i + 1 < line.length && '"\\$`'.includes(line[i + 1])) cur += line[++i];
      else cur += ch;
    } else if (ch === '"' || (ch === "'" && !windows)) {
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
export function parseSetting(setting: unknown, platform: string = process.platform): string[] | null {
  if (setting == null) return null;
  if (typeof setting === "string") {
    const words = splitCommandLine(setting.trim(), platform);
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
  const platform = ctx.platform ?? process.platform;
  const words = parseSetting(setting, platform);
  if (words) {
    const [command, ...args] = words.map((w) => expandWord(w, ctx, env));
    return { command: resolveRelative(command, ctx.workspaceFolder, platform), args, source: "setting" };
  }
  const onPath = ctx.findOnPath("diffucode");
  if (onPath) return { command: onPath, args: ["lsp"], source: "path" };
  const py = ctx.pythonInterpreter?.filter((w) => w !== "");
  if (py && py.length) return { command: py[0], args: [...py.slice(1), "-m", "diffucode", "lsp"], source: "python-extension" };
  return { command: "python3", args: ["-m", "diffucode", "lsp"], source: "python3" };
}

/**
 * A relative executable path with a directory part (`.venv/bin/diffucode`) is taken relative to the
 * workspace folder (the server's working directory); a bare name is left for the PATH search.
 */
export function resolveRelative(command: string, workspaceFolder: string | undefined, platform: string = process.platform): string {
  const p = platform === "win32" ? path.win32 : path.posix;
  const hasDir = command.includes("/") || (platform === "win32" && command.includes("\\"));
  if (!workspaceFolder || !hasDir || p.isAbsolute(command)) return command;
  return p.join(workspaceFolder, command);
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
