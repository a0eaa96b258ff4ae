// diffucode for VS Code: starts `diffucode lsp` (inline completion comes with vscode-languageclient),
// adds selection commands that show the denoising in place, a status bar item and settings sync.
//
// The server registers the commands diffucode.{infill,rewrite,repair}Selection itself (its code
// actions use them, and the language client registers them): the extension's own commands use
// different ids (diffucode.client.*).
import * as vscode from "vscode";
import { DenoiseView } from "./denoiseView";
import { DENOISE_STEP, ServerManager } from "./server";
import { runSelectionJob } from "./selectionJobs";
import { needsRestart } from "./settings";
import { StatusBar } from "./statusBar";

export interface DiffucodeApi {
  server: ServerManager;
  denoise: DenoiseView;
}

let activeServer: ServerManager | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<DiffucodeApi> {
  const status = new StatusBar("diffucode.client.menu");
  const server = new ServerManager(context, status);
  activeServer = server;
  const config = () => vscode.workspace.getConfiguration("diffucode");
  const denoise = new DenoiseView(() => config().get<boolean>("showDenoising", true));
  context.subscriptions.push(status, server, denoise);

  server.onClient((client) => {
    client.onNotification(DENOISE_STEP, (params) => denoise.onStep(params));
  });

  const register = (id: string, fn: () => unknown) => context.subscriptions.push(vscode.commands.registerCommand(id, fn));
  register("diffucode.client.infillSelection", () => runSelectionJob("infill", server, status, denoise));
  register("diffucode.client.rewriteSelection", () => runSelectionJob("rewrite", server, status, denoise));
  register("diffucode.client.repairSelection", () => runSelectionJob("repair", server, status, denoise));
  register("diffucode.client.restartServer", () => server.restart());
  register("diffucode.client.showOutput", () => server.showOutput());
  register("diffucode.client.toggleDenoising", async () => {
    const next = !config().get<boolean>("showDenoising", true);
    await config().update("showDenoising", next, vscode.ConfigurationTarget.Global);
    if (!next) denoise.clear();
    void vscode.window.showInformationMessage(`diffucode: denoising view ${next ? "on" : "off"}.`);
  });
  register("diffucode.client.showStatus", async () => {
    server.showOutput();
    if (!server.running) {
      const why = server.failed?.replace(/^diffucode: /, "") ?? "it is stopped or still starting.";
      void vscode.window.showWarningMessage(`diffucode: the language server is not running: ${why}`, "Restart server").then((c) => {
        if (c === "Restart server") void server.restart();
      });
      return undefined;
    }
    const st = await server.refreshStatus();
    if (!st) {
      void vscode.window.showErrorMessage("diffucode: the language server did not answer diffucode/status (see the diffucode output channel).");
    } else if (st.loadError) {
      void vscode.window.showErrorMessage(`diffucode: ${st.model} on ${st.device}: the model failed to load: ${st.loadError}`, "Open settings").then((c) => {
        if (c === "Open settings") void vscode.commands.executeCommand("workbench.action.openSettings", "diffucode.model");
      });
    } else {
      void vscode.window.showInformationMessage(`diffucode: ${st.model} on ${st.device}, ${st.loaded ? "loaded" : "not loaded yet"}.`);
    }
    return st;
  });
  register("diffucode.client.menu", async () => {
    const items: (vscode.QuickPickItem & { command: string })[] = [
      { label: "$(sparkle) Infill selection", command: "diffucode.client.infillSelection" },
      { label: "$(edit) Rewrite selection", command: "diffucode.client.rewriteSelection" },
      { label: "$(wrench) Repair low-confidence tokens", command: "diffucode.client.repairSelection" },
      { label: "$(eye) Show denoising (toggle)", command: "diffucode.client.toggleDenoising" },
      { label: "$(info) Show server status", command: "diffucode.client.showStatus" },
      { label: "$(output) Show output", command: "diffucode.client.showOutput" },
      { label: "$(debug-restart) Restart server", command: "diffucode.client.restartServer" },
      { label: "$(gear) Settings", command: "workbench.action.openSettings" },
    ];
    const pick = await vscode.window.showQuickPick(items, { placeHolder: "diffucode" });
    if (pick) await vscode.commands.executeCommand(pick.command, ...(pick.command === "workbench.action.openSettings" ? ["diffucode"] : []));
  });

  context.subscriptions.push(
    vscode.workspace.onDidChangeConfiguration(async (e) => {
      if (!e.affectsConfiguration("diffucode")) return;
      if (needsRestart((key) => e.affectsConfiguration(`diffucode.${key}`))) {
        await server.restart();
        return;
      }
      if (e.affectsConfiguration("diffucode.showDenoising") && !config().get<boolean>("showDenoising", true)) denoise.clear();
      await server.pushSettings(); // and refreshes the status: a new model may load, or fail to
    }),
    // In an untrusted workspace the Python extension's interpreter is not used (see ServerManager).
    vscode.workspace.onDidGrantWorkspaceTrust(() => {
      if (server.command?.source === "python3" || server.failed) void server.restart();
    }),
  );

  void server.start();
  return { server, denoise };
}

/** VS Code waits for the returned promise: the server gets its shutdown / exit before the host goes. */
export function deactivate(): Promise<void> | undefined {
  const server = activeServer;
  activeServer = undefined;
  return server?.stop();
}
