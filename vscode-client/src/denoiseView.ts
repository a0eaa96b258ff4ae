// Draws diffucode/denoiseStep notifications in the editor while a selection job runs: the
// selection's original text fades and the intermediate text (░ = still masked) is drawn over it,
// so tokens appear in parallel, step by step. Cleared when the job ends, when the document
// changes (the final edit landing), or when no step arrived for a while (only for documents with no
// job of ours in flight: the server's code actions run jobs whose end the extension does not see).
import * as vscode from "vscode";
import { DenoisePlan, DenoiseStep, parseStep, planDenoise } from "./denoise";

const IDLE_CLEAR_MS = 4000;

interface Shown {
  jobId: number;
  version: number;
  timer?: NodeJS.Timeout;
}

export class DenoiseView implements vscode.Disposable {
  private readonly fade = vscode.window.createTextEditorDecorationType({
    opacity: "0.3",
  });
  private readonly preview = vscode.window.createTextEditorDecorationType({
    before: {
      color: new vscode.ThemeColor("editorInfo.foreground"),
      backgroundColor: new vscode.ThemeColor("diffEditor.insertedTextBackground"),
      fontStyle: "normal",
    },
  });
  private readonly shown = new Map<string, Shown>();
  /** Jobs of ours in flight, per document URI: their end clears the drawing, not the idle timer. */
  private readonly jobs = new Map<string, number>();
  private readonly subscriptions: vscode.Disposable[] = [];
  private lastStep: DenoiseStep | undefined;

  constructor(private enabled: () => boolean) {
    this.subscriptions.push(
      vscode.workspace.onDidChangeTextDocument((e) => {
        if (e.contentChanges.length) this.clear(e.document.uri.toString());
      }),
      vscode.workspace.onDidCloseTextDocument((d) => this.clear(d.uri.toString())),
      vscode.window.onDidChangeVisibleTextEditors(() => this.redrawLast()),
    );
  }

  /** The latest step seen (for tests and the status tooltip). */
  get latest(): DenoiseStep | undefined {
    return this.lastStep;
  }

  /** A selection job of ours runs on `uri` (a VS Code URI string); call the result when it ends. */
  beginJob(uri: string): () => void {
    this.jobs.set(uri, (this.jobs.get(uri) ?? 0) + 1);
    const prev = this.shown.get(uri);
    if (prev?.timer) clearTimeout(prev.timer);
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      const n = (this.jobs.get(uri) ?? 1) - 1;
      if (n > 0) this.jobs.set(uri, n);
      else this.jobs.delete(uri);
    };
  }

  /** Handle one diffucode/denoiseStep notification. */
  onStep(raw: unknown): void {
    const step = parseStep(raw);
    if (!step) return;
    this.lastStep = step;
    if (!this.enabled()) return;
    this.draw(step);
  }

  private redrawLast(): void {
    if (this.lastStep && this.shown.has(this.lastStep.uri)) this.draw(this.lastStep);
  }

  private draw(step: DenoiseStep): void {
    const key = normalizeUri(step.uri);
    const doc = vscode.workspace.textDocuments.find((d) => d.uri.toString() === key || normalizeUri(d.uri.toString()) === key);
    if (!doc || doc.version !== step.version) return; // the text moved on: the range no longer fits
    const plan = planDenoise(step.range, step.texts, (l) => doc.lineAt(l).text.length, doc.lineCount);
    const editors = vscode.window.visibleTextEditors.filter((e) => e.document === doc);
    for (const editor of editors) this.apply(editor, plan);
    const uri = doc.uri.toString();
    const prev = this.shown.get(uri);
    if (prev?.timer) clearTimeout(prev.timer);
    let timer: NodeJS.Timeout | undefined;
    if (!this.jobs.has(uri)) {
      timer = setTimeout(() => this.clear(uri), IDLE_CLEAR_MS);
      timer.unref?.();
    }
    this.shown.set(uri, { jobId: step.jobId, version: step.version, timer });
  }

  private apply(editor: vscode.TextEditor, plan: DenoisePlan): void {
    const range = (r: { start: { line: number; character: number }; end: { line: number; character: number } }) =>
      new vscode.Range(r.start.line, r.start.character, r.end.line, r.end.character);
    editor.setDecorations(this.fade, plan.faded.map(range));
    editor.setDecorations(
      this.preview,
      plan.previews.map((p) => ({
        range: new vscode.Range(p.at.line, p.at.character, p.at.line, p.at.character),
        renderOptions: { before: { contentText: p.text } },
      })),
    );
  }

  /** Remove the drawing for one document (by URI string), or for all. */
  clear(uri?: string): void {
    for (const [key, s] of [...this.shown]) {
      if (uri !== undefined && key !== uri && normalizeUri(key) !== normalizeUri(uri)) continue;
      if (s.timer) clearTimeout(s.timer);
      this.shown.delete(key);
      for (const editor of vscode.window.visibleTextEditors) {
        if (editor.document.uri.toString() !== key) continue;
        editor.setDecorations(this.fade, []);
        editor.setDecorations(this.preview, []);
      }
    }
  }

  dispose(): void {
    this.clear();
    this.fade.dispose();
    this.preview.dispose();
    for (const d of this.subscriptions) d.dispose();
  }
}

/** URIs from the server may be percent-encoded differently from VS Code's (`%3A` vs `:`). */
function normalizeUri(uri: string): string {
  try {
    return vscode.Uri.parse(uri).toString();
  } catch {
    return uri;
  }
}
