// diffucode/denoiseStep notifications → what the editor draws. Pure logic (no `vscode` import).
//
// The server streams the hole's intermediate text (`░` = a token still masked) after every denoising
// step. Editor decorations cannot insert line breaks, so the text is laid over the range line by
// line: the original text of each line of the range is faded, and the matching line of the
// intermediate text is drawn in front of it. Extra lines of the intermediate text join the last
// line (shown with ⏎); range lines with no intermediate text left are only faded.

export interface Position {
  line: number;
  character: number;
}

export interface Range {
  start: Position;
  end: Position;
}

export interface DenoiseStep {
  uri: string;
  version: number;
  jobId: number;
  mode: string;
  range: Range;
  step: number;
  maskedLeft: number;
  texts: string[];
}

export interface Preview {
  /** Where the text is drawn (in front of the original text there). */
  at: Position;
  /** The text, ready for a decoration: spaces as U+00A0 so indentation survives. */
  text: string;
  /** Masked tokens (`░` runs) in this piece. */
  masked: number;
}

export interface DenoisePlan {
  faded: Range[];
  previews: Preview[];
}

export const MASK = "░";
const NEWLINE_MARK = " ⏎ ";

/** Validate a notification's params; null when they are not a denoise step. */
export function parseStep(raw: unknown): DenoiseStep | null {
  if (typeof raw !== "object" || raw === null) return null;
  const p = raw as Record<string, unknown>;
  const pos = (v: unknown): v is Position =>
    typeof v === "object" && v !== null && Number.isInteger((v as Position).line) && Number.isInteger((v as Position).character);
  const rng = p.range as Range | undefined;
  if (typeof p.uri !== "string" || !Number.isInteger(p.version) || !rng || !pos(rng.start) || !pos(rng.end)) return null;
  if (!Array.isArray(p.texts) || !p.texts.every((t) => typeof t === "string")) return null;
  return {
    uri: p.uri,
    version: p.version as number,
    jobId: Number.isInteger(p.jobId) ? (p.jobId as number) : 0,
    mode: typeof p.mode === "string" ? p.mode : "infill",
    range: rng,
    step: Number.isInteger(p.step) ? (p.step as number) : 0,
    maskedLeft: Number.isInteger(p.maskedLeft) ? (p.maskedLeft as number) : 0,
    texts: p.texts as string[],
  };
}

/** Text for a decoration: tabs and spaces kept visible (U+00A0), control characters dropped. */
export function displayText(text: string, tabSize = 4): string {
  return text
    .replace(/\t/g, " ".repeat(tabSize))
    .replace(/ /g, "\u00a0")
    .replace(/[\p{Cc}]/gu, "");
}

/** Number of masked tokens shown: runs of `░` count once per character (the server prints one per token). */
export function countMasked(text: string): number {
  let n = 0;
  for (const ch of text) if (ch === MASK) n++;
  return n;
}

/**
 * Lay the intermediate `texts` (one per hole; joined) over `range` of a document whose line `i` has
 * `lineLength(i)` characters and which has `lineCount` lines.
 */
export function planDenoise(range: Range, texts: string[], lineLength: (line: number) => number, lineCount: number, maxChars = 400): DenoisePlan {
  const start = clamp(range.start, lineLength, lineCount);
  let end = clamp(range.end, lineLength, lineCount);
  if (before(end, start)) end = start;
  const lines = texts.join("").split(/\r\n|\r|\n/);
  // A selection of whole lines ends at column 0 of the next line: that line is not part of it.
  const lastLine = end.line > start.line && end.character === 0 ? end.line - 1 : end.line;
  const rows: Range[] = [];
  for (let l = start.line; l <= lastLine; l++) {
    const s = l === start.line ? start.character : 0;
    const e = l === end.line ? end.character : lineLength(l);
    rows.push({ start: { line: l, character: s }, end: { line: l, character: e } });
  }
  // Trailing empty lines of the text (a hole that ends with a newline) add nothing to draw.
  while (lines.length > 1 && lines[lines.length - 1].trim() === "" && lines.length > rows.length) lines.pop();
  const pieces: string[] = [];
  for (let i = 0; i < rows.length; i++) {
    if (i >= lines.length) break;
    pieces.push(i === rows.length - 1 ? lines.slice(i).join(NEWLINE_MARK) : lines[i]);
  }
  const previews: Preview[] = [];
  pieces.forEach((piece, i) => {
    if (piece === "") return;
    const shown = piece.length > maxChars ? piece.slice(0, maxChars) + "…" : piece;
    previews.push({ at: rows[i].start, text: displayText(shown), masked: countMasked(piece) });
  });
  const faded = rows.filter((r) => r.end.character > r.start.character);
  return { faded, previews };
}

function before(a: Position, b: Position): boolean {
  return a.line < b.line || (a.line === b.line && a.character < b.character);
}

function clamp(p: Position, lineLength: (line: number) => number, lineCount: number): Position {
  if (lineCount <= 0) return { line: 0, character: 0 };
  if (p.line >= lineCount) return { line: lineCount - 1, character: lineLength(lineCount - 1) };
  const line = Math.max(0, p.line);
  return { line, character: Math.max(0, Math.min(p.character, lineLength(line))) };
}

/** A one-line summary for the status bar / progress: "step 3 · 10 masked". */
export function describeStep(step: DenoiseStep): string {
  return `step ${step.step} · ${step.maskedLeft} masked`;
}
