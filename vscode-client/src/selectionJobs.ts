// Infill / Rewrite / Repair selection: a diffucode/infill request with apply: true. The server
// streams the denoising (drawn by DenoiseView), reports $/progress on our token, and lands the best
// candidate through its version-checked workspace/applyEdit before it answers.
import * as vscode from "vscode";
import { WorkDoneProgress, WorkDoneProgressBegin, WorkDoneProgressReport } from "vscode-languageclient/node";
import { DenoiseView } from "./denoiseView";
import { DOCUMENT_SELECTOR, errorText, LANGUAGES, ServerManager } from "./server";
import { elapsedOf } from "./statusModel";
import { StatusBar } from "./statusBar";

export const INFILL_REQUEST = "diffucode/infill";
export type Mode = "infill" | "rewrite" | "repair";

const TITLES: Record<Mode, string> = { infill: "Infill selection", rewrite: "Rewrite selection", repair: "Repair low-confidence tokens" };
const REQUEST_CANCELLED = -32800;
/** The server's answer when the model is unavailable (it failed to load, ...). */
const REQUEST_FAILED = -32803;

interface InfillResult {
  applied: boolean | null;
  failureReason: string | null;
  elapsedMs: number;
  candidates: { valid: boolean }[];
  invalid: number;
}

let tokenCounter = 0;

export async function runSelectionJob(mode: Mode, server: ServerManager, status: StatusBar, view: DenoiseView): Promise<InfillResult | undefined> {
  const editor = vscode.window.activeTextEditor;
  if (!editor) {
    void vscode.window.showInformationMessage(`diffucode: open a file and select code to ${mode}.`);
    return undefined;
  }
  const doc = editor.document;
  if (!vscode.languages.match(DOCUMENT_SELECTOR, doc)) {
    void vscode.window.showInformationMessage(
      `diffucode: ${TITLES[mode]} works on ${LANGUAGES.join(", ")} files (saved or untitled); this one is ${doc.languageId}${doc.uri.scheme === "file" || doc.uri.scheme === "untitled" ? "" : ` (${doc.uri.scheme}:)`}.`,
    );
    return undefined;
  }
  if (!server.running) await server.start();
  const client = server.client;
  if (!client || !server.running) {
    if (server.failed) return undefined; // the failed start was reported already
    void vscode.window.showErrorMessage("diffucode: the language server is not running.", "Restart server", "Show output").then((c) => {
      if (c === "Restart server") void server.restart();
      else if (c === "Show output") server.showOutput();
    });
    return undefined;
  }
  const sel = editor.selection;
  if (sel.isEmpty && mode !== "infill") {
    void vscode.window.showInformationMessage(`diffucode: select the code to ${mode === "rewrite" ? "rewrite" : "repair"} first.`);
    return undefined;
  }
  const token = `diffucode-client-${process.pid}-${++tokenCounter}`;
  const params = {
    textDocument: { uri: client.code2ProtocolConverter.asUri(doc.uri), version: doc.version },
    range: client.code2ProtocolConverter.asRange(sel),
    mode,
    apply: true,
    workDoneToken: token,
  };
  const done = status.begin();
  const uri = doc.uri.toString();
  const endJob = view.beginJob(uri);
  try {
    return await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: `diffucode: ${TITLES[mode]}`, cancellable: true },
      async (progress, cancel) => {
        let last = 0;
        const sub = client.onProgress(WorkDoneProgress.type, token, (value) => {
          if (value.kind === "end") return;
          const v = value as WorkDoneProgressBegin | WorkDoneProgressReport;
          const pct = typeof v.percentage === "number" ? v.percentage : last;
          progress.report({ message: v.message, increment: Math.max(0, pct - last) });
          last = Math.max(last, pct);
        });
        try {
          const result = (await client.sendRequest(INFILL_REQUEST, params, cancel)) as InfillResult;
          done(elapsedOf(result), mode);
          if (!result.applied) {
            const why = result.failureReason ?? "the edit was not applied";
            void vscode.window.showWarningMessage(`diffucode: ${TITLES[mode]}: ${why}.`);
          }
          return result;
        } finally {
          sub.dispose();
        }
      },
    );
  } catch (err) {
    done();
    const code = (err as { code?: number }).code;
    if (code !== REQUEST_CANCELLED) void vscode.window.showErrorMessage(`diffucode: ${TITLES[mode]} failed: ${errorText(err)}`);
    if (code === REQUEST_FAILED) void server.refreshStatus(); // e.g. the model failed to load: the status bar turns red
    return undefined;
  } finally {
    endJob();
    view.clear(uri);
  }
}
