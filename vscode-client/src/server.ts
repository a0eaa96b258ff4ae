// Starting, stopping and restarting the language server, and keeping its settings in sync.
//
// Start, stop and restart run one at a time (a SerialQueue). A start is bounded: the initialize
// handshake must finish within START_TIMEOUT_MS, and a restart or stop gives up a pending start at
// once (its process is terminated) instead of waiting for it. The server's state (starting,
// running, stopped, failed), the model's load error and an open "loading model" progress are kept
// here; the status bar shows what statusModel.serverStatus makes of them.
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
  ProgressToken,
  ServerOptions,
  State,
} from "vscode-languageclient/node";
import { Attempt, SerialQueue, StartAborted, StartTimeout } from "./lifecycle";
import { pythonInterpreter } from "./pythonInterpreter";
import { findOnPath, formatCommand, resolveServerCommand, ServerCommand } from "./serverCommand";
import { isUserSet, settingsUpdate, toServerSettings, userSettings } from "./settings";
import { StatusBar } from "./statusBar";
import { ServerPhase, serverStatus } from "./statusModel";

export const LANGUAGES = ["python", "javascript", "typescript", "javascriptreact", "typescriptreact", "go", "rust", "java", "c", "cpp"];
export const DOCUMENT_SELECTOR: { scheme: string; language: string }[] = LANGUAGES.flatMap((language) => [
  { scheme: "file", language },
  { scheme: "untitled", language },
]);
export const STATUS_REQUEST = "diffucode/status";
export const DENOISE_STEP = "diffucode/denoiseStep";
/** How long the server may take to answer `initialize` before the start counts as failed. */
export const START_TIMEOUT_MS = 90_000;
/** Crashes within CRASH_WINDOW_MS after which the server is not restarted any more. */
const MAX_CRASHES = 5;
const CRASH_WINDOW_MS = 180_000;

type FailAction = "How to install" | "Open settings" | "Restart server" | "Show output";

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

export class ServerManager implements vscode.Disposable {
  client: LanguageClient | undefined;
  command: ServerCommand | undefined;
  /** The model load error `diffucode/status` last reported, or null. */
  loadError: string | null = null;
  private phase: ServerPhase = "starting";
  private failure: string | undefined;
  private detail: string | undefined;
  private readonly loading = new Set<ProgressToken>();
  private readonly output: vscode.LogOutputChannel;
  private readonly trace: vscode.LogOutputChannel;
  private readonly listeners: ((client: LanguageClient) => void)[] = [];
  private readonly queue = new SerialQueue();
  private attempt: Attempt | undefined;
  private restarts = 0;
  private crashes: number[] = [];
  /** Server keys the server last got a user value for (see settings.settingsUpdate). */
  private sentKeys = new Set<string>();
  private disposed = false;

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

  /** Why the server is not running, if it failed (not found, did not start, crashed too often). */
  get failed(): string | undefined {
    return this.phase === "failed" ? this.failure : undefined;
  }

  private setPhase(phase: ServerPhase, detail?: string): void {
    this.phase = phase;
    this.detail = detail;
    if (phase !== "failed") this.failure = undefined;
    this.updateStatus();
  }

  private updateStatus(): void {
    const view = serverStatus({ phase: this.phase, failure: this.failure, loading: this.loading.size > 0, loadError: this.loadError, detail: this.detail });
    this.status.set(view.kind, view.detail);
  }

  async resolveCommand(): Promise<ServerCommand> {
    const folder = vscode.workspace.workspaceFolders?.[0];
    const setting = vscode.workspace.getConfiguration("diffucode").get("serverCommand");
    const onPath = (name: string) => findOnPath(name, process.env.PATH, isExecutable, process.platform, process.env.PATHEXT);
    const ctx = {
      findOnPath: onPath,
      workspaceFolder: folder?.uri.fsPath,
      home: os.homedir(),
      platform: process.platform,
      pythonInterpreter: undefined as string[] | undefined,
    };
    let cmd = resolveServerCommand(setting, ctx, process.env);
    // In an untrusted workspace the interpreter the Python extension picked may be the workspace's
    // own (a .venv in it): do not run it.
    if (cmd.source === "python3" && vscode.workspace.isTrusted) {
      ctx.pythonInterpreter = await pythonInterpreter(folder?.uri);
      cmd = resolveServerCommand(setting, ctx, process.env);
    }
    return cmd;
  }

  /** Start the server unless it runs or is starting (then wait for that start). */
  start(): Promise<void> {
    return this.queue.run(() => this.attemptStart());
  }

  /** Stop the server; a pending start is given up. */
  stop(): Promise<void> {
    this.attempt?.abort();
    return this.queue.run(() => this.doStop());
  }

  /** Stop and start again: a pending start is given up, and of several quick restarts only the last runs. */
  restart(): Promise<void> {
    const generation = ++this.restarts;
    this.attempt?.abort();
    return this.queue.run(async () => {
      if (generation !== this.restarts) return; // a newer restart is queued
      this.crashes = [];
      await this.doStop();
      await this.attemptStart();
    });
  }

  private async attemptStart(): Promise<void> {
    if (this.disposed) return;
    const attempt = new Attempt();
    this.attempt = attempt;
    try {
      await this.doStart(attempt);
    } finally {
      if (this.attempt === attempt) this.attempt = undefined;
    }
  }

  private async doStart(attempt: Attempt): Promise<void> {
    const existing = this.client;
    if (existing?.state === State.Running) return;
    if (existing?.state === State.Starting) {
      // The language client is restarting the server after a crash: wait for it, do not start a second one.
      try {
        await attempt.guard(existing.start(), START_TIMEOUT_MS);
      } catch (err) {
        if (this.client !== existing) return;
        this.client = undefined;
        await this.teardown(existing);
        if (err instanceof StartTimeout) this.fail(`diffucode: the restarted language server did not answer \`initialize\` within ${START_TIMEOUT_MS / 1000} s; it was stopped.`, ["Restart server", "Show output"]);
        else if (!(err instanceof StartAborted) && this.phase !== "failed") this.fail(`diffucode: the language server could not be restarted: ${errorText(err)}.`, ["Restart server", "Show output"]);
      }
      return;
    }
    if (existing) {
      // Stopped or failed to start: replace it.
      this.client = undefined;
      await this.teardown(existing);
    }
    this.crashes = [];
    this.loadError = null;
    this.loading.clear();
    this.setPhase("starting");
    let cmd: ServerCommand;
    try {
      cmd = await attempt.guard(this.resolveCommand(), START_TIMEOUT_MS);
    } catch (err) {
      if (err instanceof StartAborted) return;
      this.fail(`diffucode: ${errorText(err)}`, ["Open settings", "Show output"]);
      return;
    }
    this.command = cmd;
    const exe = cmd.command;
    const found = exe.includes("/") || exe.includes("\\") ? isExecutable(exe) : findOnPath(exe, process.env.PATH, isExecutable, process.platform, process.env.PATHEXT);
    if (!found) {
      this.fail(`diffucode: the language server command \`${formatCommand(cmd)}\` was not found (${describeSource(cmd)}).`, ["How to install", "Open settings", "Show output"]);
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
      if (initialized || failed || this.client !== client) return;
      failed = true;
      this.client = undefined;
      void this.teardown(client);
      this.fail(`diffucode: the language server did not start (\`${formatCommand(cmd)}\`): ${reason}.`, ["How to install", "Open settings", "Show output"]);
    };
    const clientOptions: LanguageClientOptions = {
      documentSelector: DOCUMENT_SELECTOR,
      outputChannel: this.output,
      traceOutputChannel: this.trace,
      // A function: evaluated again when the client restarts the server after a crash.
      initializationOptions: () => this.settingsPayload(true),
      initializationFailedHandler: (error) => {
        startFailed(errorText(error));
        return false;
      },
      errorHandler: {
        error: (): ErrorHandlerResult => ({ action: ErrorAction.Continue, handled: true }),
        closed: (): CloseHandlerResult => {
          if (this.client !== client) return { action: CloseAction.DoNotRestart, handled: true }; // replaced or stopped
          if (!initialized) {
            startFailed("the server exited; its output is in the diffucode output channel");
            return { action: CloseAction.DoNotRestart, handled: true };
          }
          const now = Date.now();
          this.crashes = [...this.crashes.filter((t) => now - t < CRASH_WINDOW_MS), now];
          if (this.crashes.length >= MAX_CRASHES) {
            this.fail(`diffucode: the language server crashed ${MAX_CRASHES} times in the last ${CRASH_WINDOW_MS / 60_000} minutes and will not be restarted.`, ["Restart server", "Show output"]);
            return { action: CloseAction.DoNotRestart, handled: true };
          }
          this.loadError = null;
          this.loading.clear();
          this.setPhase("starting", "the server stopped; restarting it");
          return { action: CloseAction.Restart, handled: true };
        },
      },
      middleware: {
        workspace: {
          // The server pulls the "diffucode" section: answer with what a push would send.
          configuration: async (params, token, next) => {
            const answer = await next(params, token);
            if (!Array.isArray(answer)) return answer;
            return answer.map((value, i) => (params.items[i]?.section === "diffucode" ? this.settingsPayload(false) : value));
          },
        },
        // The server reports loading the model as a "loading model" progress: show it in the status bar.
        handleWorkDoneProgress: (token, params, next) => {
          if (this.client === client) {
            if (params.kind === "begin" && /loading model/i.test(params.title)) {
              this.loading.add(token);
              this.updateStatus();
            } else if (params.kind === "end" && this.loading.delete(token)) {
              this.updateStatus();
              void this.refreshStatus();
            }
          }
          next(token, params);
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
    const client: LanguageClient = new DiffucodeClient("diffucode", "diffucode", serverOptions, clientOptions);
    this.client = client;
    client.onDidChangeState((e) => {
      if (this.client !== client) return;
      if (e.newState === State.Running) {
        const restarted = initialized;
        this.setPhase("running", `server: ${formatCommand(cmd)}`);
        if (restarted) void this.refreshStatus(); // the client restarted it after a crash
      } else if (e.newState === State.Starting) {
        if (this.phase !== "starting") this.setPhase("starting", this.detail);
      } else if (this.phase !== "failed") {
        this.setPhase("stopped");
      }
    });
    for (const listener of this.listeners) listener(client);
    try {
      await attempt.guard(client.start(), START_TIMEOUT_MS);
    } catch (err) {
      if (this.client !== client) return; // reported already, or replaced
      if (!(err instanceof StartAborted || err instanceof StartTimeout)) {
        startFailed(errorText(err));
        return;
      }
      failed = true;
      this.client = undefined;
      await this.teardown(client);
      if (err instanceof StartTimeout) {
        this.fail(`diffucode: the language server (\`${formatCommand(cmd)}\`) did not answer \`initialize\` within ${START_TIMEOUT_MS / 1000} s; it was stopped.`, ["Restart server", "Open settings", "Show output"]);
      }
      return;
    }
    if (failed || this.client !== client) return;
    initialized = true;
    this.setPhase("running", `server: ${formatCommand(cmd)}`);
    // Settings changed while the server started went nowhere (pushSettings waits for Running).
    await this.pushSettings();
  }

  /**
   * The settings to send: the ones the user set, plus defaults for keys sent before and unset since.
   * `remember`: this goes to the server (initialize, a push), so the sent keys are updated.
   */
  private settingsPayload(remember: boolean): Record<string, unknown> {
    const cfg = vscode.workspace.getConfiguration("diffucode");
    const user = userSettings(
      (key) => cfg.get(key),
      (key) => isUserSet(cfg.inspect(key)),
    );
    const defaults = toServerSettings((key) => cfg.inspect(key)?.defaultValue);
    const { payload, sent } = settingsUpdate(user, this.sentKeys, defaults);
    if (remember) this.sentKeys = sent;
    return payload;
  }

  /** Ask the server what it runs (model, loaded, load error) and show it in the status bar. */
  async refreshStatus(): Promise<Record<string, unknown> | undefined> {
    const client = this.client;
    if (!client || client.state !== State.Running) return undefined;
    try {
      const st = (await client.sendRequest(STATUS_REQUEST, {})) as Record<string, unknown>;
      if (this.client !== client) return st;
      this.loadError = st.loadError ? String(st.loadError) : null;
      if (this.phase === "running") this.detail = `model: ${st.model} on ${st.device} (${st.loaded ? "loaded" : "loads on first use"})`;
      this.updateStatus();
      return st;
    } catch (err) {
      this.output.appendLine(`[diffucode] ${STATUS_REQUEST} failed: ${errorText(err)}`);
      return undefined;
    }
  }

  /** Send the settings (called on every change of the diffucode section), then refresh the status. */
  async pushSettings(): Promise<void> {
    const client = this.client;
    if (!client || client.state !== State.Running) return;
    await client.sendNotification(DidChangeConfigurationNotification.type, { settings: { diffucode: this.settingsPayload(true) } });
    await this.refreshStatus();
  }

  private async doStop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (!client) return;
    await this.teardown(client);
    this.loading.clear();
    this.setPhase("stopped");
  }

  /** Stop a client in any state; one that is still starting has its process terminated. */
  private async teardown(client: LanguageClient): Promise<void> {
    const proc = client.serverProcess;
    if (client.state === State.Running) {
      try {
        await client.stop(5000);
      } catch (err) {
        this.output.appendLine(`[diffucode] stopping the server: ${errorText(err)}`);
      }
    } else if (proc && proc.exitCode === null && proc.signalCode === null) {
      // A client that is starting cannot be stopped through the protocol.
      proc.kill();
    }
    // Disposed, it will not restart the server by itself either.
    await client.dispose().catch(() => undefined);
  }

  private fail(message: string, actions: FailAction[]): void {
    this.failure = message;
    this.setPhase("failed");
    this.output.appendLine(`[diffucode] ${message}`);
    const help = actions.includes("How to install") ? " Install diffucode (`pip install -e .` in its repository, or `pip install PATH/TO/diffucode`) or set `diffucode.serverCommand`." : "";
    void vscode.window.showErrorMessage(`${message}${help}`, ...actions).then((choice) => {
      if (choice === "How to install") void this.openInstallDocs();
      else if (choice === "Open settings") void vscode.commands.executeCommand("workbench.action.openSettings", "diffucode.serverCommand");
      else if (choice === "Restart server") void this.restart();
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
    this.disposed = true;
    void this.stop().finally(() => {
      this.output.dispose();
      this.trace.dispose();
    });
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
