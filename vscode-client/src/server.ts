// Starting, stopping and restarting the language server, and keeping its settings in sync.
import * as fs from "fs";
import * as os from "os";
import * as vscode from "vscode";
import {
  CloseAction,
  CloseHandlerResult,
  DidChangeConfigurationNotification,
  ErrorAction,
  ErrorHandlerResult,
  LanguageClient,
  LanguageClientOptions,
  ServerOptions,
  State,
} from "vscode-languageclient/node";
import { pythonInterpreter } from "./pythonInterpreter";
import { findOnPath, formatCommand, resolveServerCommand, ServerCommand } from "./serverCommand";
import { fromObject, toServerSettings } from "./settings";
import { StatusBar } from "./statusBar";

export const LANGUAGES = ["python", "javascript", "typescript", "javascriptreact", "typescriptreact", "go", "rust", "java", "c", "cpp"];
export const STATUS_REQUEST = "diffucode/status";
export const DENOISE_STEP = "diffucode/denoiseStep";

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

export function serverSettings(scope?: vscode.ConfigurationScope): Record<string, unknown> {
  const cfg = vscode.workspace.getConfiguration("diffucode", scope);
  return toServerSettings((key) => cfg.get(key));
}

export class ServerManager implements vscode.Disposable {
  client: LanguageClient | undefined;
  command: ServerCommand | undefined;
  private readonly output: vscode.LogOutputChannel;
  private readonly trace: vscode.LogOutputChannel;
  private readonly listeners: ((client: LanguageClient) => void)[] = [];
  private starting: Promise<void> | undefined;
  private crashes: number[] = [];

  constructor(
    private readonly context: vscode.ExtensionContext,
    private readonly status: StatusBar,
  ) {
    this.output = vscode.window.createOutputChannel("diffucode", { log: true });
    this.trace = vscode.window.createOutputChannel("diffucode (protocol)", { log: true });
  }

  showOutput(): void {
    this.output.show(true);
  }

  /** Called with every new client (after a restart too), before it starts. */
  onClient(listener: (client: LanguageClient) => void): void {
    this.listeners.push(listener);
  }

  get running(): boolean {
    return this.client?.state === State.Running;
  }

  async resolveCommand(): Promise<ServerCommand> {
    const folder = vscode.workspace.workspaceFolders?.[0];
    const setting = vscode.workspace.getConfiguration("diffucode").get("serverCommand");
    const onPath = (name: string) => findOnPath(name, process.env.PATH, isExecutable, process.platform, process.env.PATHEXT);
    const ctx = {
      findOnPath: onPath,
      workspaceFolder: folder?.uri.fsPath,
      home: os.homedir(),
      pythonInterpreter: undefined as string[] | undefined,
    };
    let cmd = resolveServerCommand(setting, ctx, process.env);
    if (cmd.source === "python3") {
      ctx.pythonInterpreter = await pythonInterpreter(folder?.uri);
      cmd = resolveServerCommand(setting, ctx, process.env);
    }
    return cmd;
  }

  start(): Promise<void> {
    if (!this.starting) this.starting = this.doStart().finally(() => (this.starting = undefined));
    return this.starting;
  }

  private async doStart(): Promise<void> {
    this.status.set("starting");
    let cmd: ServerCommand;
    try {
      cmd = await this.resolveCommand();
    } catch (err) {
      this.fail(`diffucode: ${errorText(err)}`);
      return;
    }
    this.command = cmd;
    const exe = cmd.command;
    const found = exe.includes("/") || exe.includes("\\") ? isExecutable(exe) : findOnPath(exe, process.env.PATH, isExecutable, process.platform, process.env.PATHEXT);
    if (!found) {
      this.fail(`diffucode: the language server command \`${formatCommand(cmd)}\` was not found (${describeSource(cmd)}).`);
      return;
    }
    this.output.appendLine(`[diffucode] starting ${formatCommand(cmd)} (${describeSource(cmd)})`);
    const serverOptions: ServerOptions = {
      command: cmd.command,
      args: cmd.args,
      options: { cwd: vscode.workspace.workspaceFolders?.[0]?.uri.fsPath, env: { ...process.env, PYTHONUNBUFFERED: "1" } },
    };
    let initialized = false;
    let failed = false;
    // The client reports a failed start in several ways (start() rejecting, the process closing,
    // initialize failing); show one message, whichever comes first.
    const startFailed = (reason: string) => {
      if (initialized || failed) return;
      failed = true;
      if (this.client === client) this.client = undefined;
      this.fail(`diffucode: the language server did not start (\`${formatCommand(cmd)}\`): ${reason}.`);
    };
    const clientOptions: LanguageClientOptions = {
      documentSelector: LANGUAGES.flatMap((language) => [
        { scheme: "file", language },
        { scheme: "untitled", language },
      ]),
      outputChannel: this.output,
      traceOutputChannel: this.trace,
      initializationOptions: serverSettings(),
      initializationFailedHandler: (error) => {
        startFailed(errorText(error));
        return false;
      },
      errorHandler: {
        error: (): ErrorHandlerResult => ({ action: ErrorAction.Continue, handled: true }),
        closed: (): CloseHandlerResult => {
          if (!initialized) {
            startFailed("the server exited; its output is in the diffucode output channel");
            return { action: CloseAction.DoNotRestart, handled: true };
          }
          const now = Date.now();
          this.crashes = [...this.crashes.filter((t) => now - t < 180_000), now];
          if (this.crashes.length > 4) {
            this.fail("diffucode: the language server crashed 5 times in the last 3 minutes and will not be restarted.");
            return { action: CloseAction.DoNotRestart, handled: true };
          }
          this.status.set("starting", "the server stopped; restarting it");
          return { action: CloseAction.Restart, handled: true };
        },
      },
      middleware: {
        workspace: {
          // The server pulls the "diffucode" section: answer with server keys only.
          configuration: async (params, token, next) => {
            const answer = await next(params, token);
            if (!Array.isArray(answer)) return answer;
            return answer.map((value, i) => (params.items[i]?.section === "diffucode" ? fromObject(value) : value));
          },
        },
        provideInlineCompletionItems: async (document, position, context, token, next) => {
          const done = this.status.begin();
          const t0 = Date.now();
          try {
            const result = await next(document, position, context, token);
            const n = Array.isArray(result) ? result.length : (result?.items.length ?? 0);
            done(token.isCancellationRequested ? undefined : Date.now() - t0, n ? "inline completion" : "inline completion (none)");
            return result;
          } catch (err) {
            done();
            throw err;
          }
        },
      },
    };
    const client = new DiffucodeClient("diffucode", "diffucode", serverOptions, clientOptions);
    this.client = client;
    client.onDidChangeState((e) => {
      if (this.client !== client) return;
      if (e.newState === State.Running) this.status.set("ready");
      else if (e.newState === State.Stopped && this.status.kind !== "error") this.status.set("stopped");
    });
    for (const listener of this.listeners) listener(client);
    try {
      await client.start();
      initialized = true;
    } catch (err) {
      startFailed(errorText(err));
      // The client is stopping itself already; do not wait for it.
      void client.dispose().catch(() => undefined);
      return;
    }
    if (failed) return;
    this.status.set("ready", `server: ${formatCommand(cmd)}`);
    void this.refreshStatus();
  }

  /** Ask the server what it runs (model, loaded, load error) and show it in the status bar. */
  async refreshStatus(): Promise<Record<string, unknown> | undefined> {
    const client = this.client;
    if (!client || client.state !== State.Running) return undefined;
    try {
      const st = (await client.sendRequest(STATUS_REQUEST, {})) as Record<string, unknown>;
      const detail = `model: ${st.model} on ${st.device} (${st.loaded ? "loaded" : "loads on first use"})`;
      if (st.loadError) this.status.set("error", `model failed to load: ${st.loadError}`);
      else if (this.status.kind === "ready") this.status.set("ready", detail);
      return st;
    } catch (err) {
      this.output.appendLine(`[diffucode] ${STATUS_REQUEST} failed: ${errorText(err)}`);
      return undefined;
    }
  }

  /** Send the current settings (called on every change of the diffucode section). */
  async pushSettings(): Promise<void> {
    const client = this.client;
    if (!client || client.state !== State.Running) return;
    await client.sendNotification(DidChangeConfigurationNotification.type, { settings: { diffucode: serverSettings() } });
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (!client) return;
    try {
      if (client.state !== State.Stopped) await client.stop(5000);
    } catch (err) {
      this.output.appendLine(`[diffucode] stopping the server: ${errorText(err)}`);
    }
    await client.dispose().catch(() => undefined);
  }

  async restart(): Promise<void> {
    if (this.starting) await this.starting.catch(() => undefined);
    this.crashes = [];
    await this.stop();
    await this.start();
  }

  private fail(message: string): void {
    this.status.set("error", message);
    this.output.appendLine(`[diffucode] ${message}`);
    const actions = ["How to install", "Open settings", "Show output"];
    void vscode.window.showErrorMessage(`${message} Install diffucode (\`pip install diffucode\`, or \`pip install -e .\` in its repository) or set \`diffucode.serverCommand\`.`, ...actions).then((choice) => {
      if (choice === "How to install") void this.openInstallDocs();
      else if (choice === "Open settings") void vscode.commands.executeCommand("workbench.action.openSettings", "diffucode.serverCommand");
      else if (choice === "Show output") this.showOutput();
    });
  }

  async openInstallDocs(): Promise<void> {
    // vsce stores the README as readme.md.
    const names = ["README.md", "readme.md"].map((n) => vscode.Uri.joinPath(this.context.extensionUri, n));
    const readme = names.find((u) => fs.existsSync(u.fsPath)) ?? names[0];
    try {
      await vscode.commands.executeCommand("markdown.showPreview", readme);
    } catch {
      await vscode.window.showTextDocument(readme);
    }
  }

  dispose(): void {
    void this.stop();
    this.output.dispose();
    this.trace.dispose();
  }
}

/** A LanguageClient that leaves the "could not start" popup to ServerManager (which offers help). */
class DiffucodeClient extends LanguageClient {
  override error(message: string, data?: unknown, showNotification: boolean | "force" = true): void {
    if (showNotification === "force" && message.includes("couldn't create connection")) showNotification = false;
    super.error(message, data, showNotification);
  }
}

function describeSource(cmd: ServerCommand): string {
  switch (cmd.source) {
    case "setting":
      return "from the diffucode.serverCommand setting";
    case "path":
      return "`diffucode` found on PATH";
    case "python-extension":
      return "the Python extension's interpreter";
    default:
      return "no `diffucode` on PATH and no interpreter selected in the Python extension";
  }
}

export function errorText(err: unknown): string {
  if (err instanceof Error) return err.message;
  if (typeof err === "object" && err !== null && "message" in err) return String((err as { message: unknown }).message);
  return String(err);
}
