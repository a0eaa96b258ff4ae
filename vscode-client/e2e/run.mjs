#!/usr/bin/env node
// End-to-end test of the extension in real VS Code: code-server in a headless Chromium, driven by
// Playwright (playwright-core; the browser is Debian's /usr/bin/chromium, never a download).
//
//   node e2e/run.mjs --code-server <dir with bin/code-server> --node <Node 24 dir> --vsix <file>
//                    [--artifacts <dir>] [--chromium /usr/bin/chromium] [--keep]
//
// Steps: install the .vsix into a fresh extensions dir, start code-server on a free port with
// temporary HOME / XDG / user-data dirs, open a Python file, type, wait for diffucode's ghost text,
// accept it with Tab, select lines and run "diffucode: Infill selection" from the command palette
// (catching the denoising decoration while it runs), and check the file changed each time; then
// set diffucode.serverCommand to a missing command in the settings editor and check that the
// extension restarts the server and reports the missing command (no window reload).
// Screenshots and logs go to --artifacts. Exit status 0 means every check passed.
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const { values: opt } = parseArgs({
  options: {
    "code-server": { type: "string" },
    node: { type: "string" },
    vsix: { type: "string" },
    artifacts: { type: "string", default: path.join(HERE, "..", "test-artifacts") },
    chromium: { type: "string", default: "/usr/bin/chromium" },
    keep: { type: "boolean", default: false },
    // JSON list: the language server's command line (default: `diffucode lsp` from this PATH). The
    // extension host resolves PATH from a login shell, so the test names the server explicitly.
    "server-command": { type: "string" },
  },
});
for (const k of ["code-server", "node", "vsix"]) if (!opt[k]) fail(`--${k} is required`);

const ARTIFACTS = path.resolve(opt.artifacts);
fs.mkdirSync(ARTIFACTS, { recursive: true });
const CODE_SERVER = path.join(opt["code-server"], "bin", "code-server");
const NODE_BIN = path.join(opt.node, "bin");
const T0 = Date.now();

function log(msg) {
  const line = `[e2e ${((Date.now() - T0) / 1000).toFixed(1).padStart(5)}s] ${msg}`;
  console.log(line);
  fs.appendFileSync(path.join(ARTIFACTS, "e2e.log"), line + "\n");
}

function fail(msg) {
  console.error(`e2e: ${msg}`);
  process.exit(2);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what, fn, timeoutMs, everyMs = 100) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}${last instanceof Error ? ` (${last.message})` : ""}`);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// -- a sandbox: workspace, HOME, XDG, user data, extensions ------------------------------------------
const ROOT = fs.mkdtempSync(path.join(os.tmpdir(), "diffucode-vscode-e2e-"));
const WS = path.join(ROOT, "ws");
const HOME = path.join(ROOT, "home");
const USER_DATA = path.join(ROOT, "user-data");
const EXTENSIONS = path.join(ROOT, "extensions");
for (const d of [WS, HOME, USER_DATA, EXTENSIONS, path.join(USER_DATA, "User")]) fs.mkdirSync(d, { recursive: true });

const FILE = path.join(WS, "shapes.py");
const ORIGINAL = [
  "import math",
  "",
  "",
  "def area(radius):",
  "    r = radius * radius",
  "    return math.pi * r",
  "",
  "",
  "def perimeter(radius):",
  "    return 2 * math.pi * radius",
  "",
  "",
  "def main():",
  "    total = 0",
  "",
].join("\n");
fs.writeFileSync(FILE, ORIGINAL);

const userSettings = {
  // The embedded model is tiny: greedy decoding mostly writes whitespace, and syntax validation
  // rejects most of what it writes. Sample a few candidates and keep them all.
  "diffucode.validate": false,
  "diffucode.inline": { steps: 4, maxNewTokens: 12, candidates: 8 },
  "diffucode.temperature": 0.8,
  "diffucode.candidates": 4,
  "diffucode.maxNewTokens": 24,
  "diffucode.steps": 24,
  "diffucode.debounceMs": 50,
  "diffucode.threads": 1,
  "diffucode.preload": true,
  "editor.inlineSuggest.enabled": true,
  "editor.autoClosingBrackets": "never",
  "editor.autoClosingQuotes": "never",
  "editor.quickSuggestions": { other: "off", comments: "off", strings: "off" },
  "editor.suggestOnTriggerCharacters": false,
  "editor.wordBasedSuggestions": "off",
  "editor.parameterHints.enabled": false,
  "editor.minimap.enabled": false,
  "editor.fontSize": 15,
  "workbench.startupEditor": "none",
  "workbench.tips.enabled": false,
  "workbench.enableExperiments": false,
  "workbench.welcomePage.walkthroughs.openOnInstall": false,
  "chat.disableAIFeatures": true,
  "security.workspace.trust.enabled": false,
  "extensions.autoCheckUpdates": false,
  "extensions.autoUpdate": false,
  "extensions.ignoreRecommendations": true,
  "telemetry.telemetryLevel": "off",
  "update.mode": "none",
  "files.autoSave": "off",
  "window.commandCenter": false,
};
userSettings["diffucode.serverCommand"] = [
  ...(opt["server-command"] ? JSON.parse(opt["server-command"]) : defaultServerCommand()),
  "--log-level",
  "debug",
  "--log-file",
  path.join(ARTIFACTS, "server.log"),
];

function defaultServerCommand() {
  for (const dir of (process.env.PATH ?? "").split(":")) {
    const exe = path.join(dir, "diffucode");
    try {
      fs.accessSync(exe, fs.constants.X_OK);
      return [exe, "lsp"];
    } catch {
      // not here
    }
  }
  fail("no `diffucode` on PATH: pass --server-command '[\"/path/to/python\", \"-m\", \"diffucode\", \"lsp\"]'");
}
fs.writeFileSync(path.join(USER_DATA, "User", "settings.json"), JSON.stringify(userSettings, null, 2));

const env = {
  ...process.env,
  PATH: `${NODE_BIN}:${process.env.PATH}`,
  HOME,
  XDG_CONFIG_HOME: path.join(HOME, ".config"),
  XDG_DATA_HOME: path.join(HOME, ".local", "share"),
  XDG_CACHE_HOME: path.join(HOME, ".cache"),
  XDG_RUNTIME_DIR: path.join(ROOT, "run"),
};
fs.mkdirSync(env.XDG_RUNTIME_DIR, { recursive: true, mode: 0o700 });
delete env.VSCODE_IPC_HOOK_CLI;

const common = ["--user-data-dir", USER_DATA, "--extensions-dir", EXTENSIONS];
let codeServer;
let browser;
let currentPage;
const failures = [];

async function main() {
  // -- install the extension ------------------------------------------------------------------------
  log(`installing ${opt.vsix}`);
  const inst = spawnSync(CODE_SERVER, [...common, "--install-extension", path.resolve(opt.vsix)], { env, encoding: "utf8", timeout: 180_000 });
  fs.writeFileSync(path.join(ARTIFACTS, "install-extension.log"), `${inst.stdout}\n${inst.stderr}`);
  if (inst.status !== 0) throw new Error(`--install-extension failed (${inst.status}): ${inst.stderr || inst.stdout}`);
  const installed = fs.readdirSync(EXTENSIONS).filter((d) => d.startsWith("diffucode.diffucode"));
  if (!installed.length) throw new Error(`the extension is not in ${EXTENSIONS}: ${fs.readdirSync(EXTENSIONS)}`);
  log(`installed ${installed[0]}`);

  // -- start code-server ------------------------------------------------------------------------------
  const port = await freePort();
  const csLog = fs.openSync(path.join(ARTIFACTS, "code-server.log"), "w");
  codeServer = spawn(
    CODE_SERVER,
    [
      ...common,
      "--bind-addr",
      `127.0.0.1:${port}`,
      "--auth",
      "none",
      "--disable-telemetry",
      "--disable-update-check",
      "--disable-workspace-trust",
      "--disable-getting-started-override",
      "--log",
      "info",
      WS,
    ],
    { env, detached: true, stdio: ["ignore", csLog, csLog] },
  );
  log(`code-server pid ${codeServer.pid} on port ${port}`);
  const base = `http://127.0.0.1:${port}`;
  await waitFor("code-server's /healthz", async () => (await fetch(`${base}/healthz`)).ok, 90_000, 250);
  log("code-server is up");

  // -- Chromium ---------------------------------------------------------------------------------------
  browser = await chromium.launch({
    executablePath: opt.chromium,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"],
    env: { ...process.env, HOME: path.join(ROOT, "chromium-home"), XDG_CONFIG_HOME: path.join(ROOT, "chromium-home", ".config"), XDG_CACHE_HOME: path.join(ROOT, "chromium-home", ".cache") },
  });
  const context = await browser.newContext({ viewport: { width: 1100, height: 640 }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  currentPage = page;
  const consoleLog = fs.createWriteStream(path.join(ARTIFACTS, "browser-console.log"));
  page.on("console", (m) => consoleLog.write(`[${m.type()}] ${m.text()}\n`));
  page.on("pageerror", (e) => consoleLog.write(`[pageerror] ${e.message}\n`));

  await page.goto(`${base}/?folder=${encodeURIComponent(WS)}`);
  await page.waitForSelector(".monaco-workbench", { timeout: 90_000 });
  log("workbench loaded");
  await sleep(1500);

  // -- open the file ----------------------------------------------------------------------------------
  await openFile(page, "shapes.py");
  const editor = page.locator(".editor-instance .monaco-editor").first();
  await editor.waitFor({ timeout: 30_000 });
  log("shapes.py open");
  await waitForServer(page);

  // -- 1. ghost text -----------------------------------------------------------------------------------
  await ghostText(page, editor);

  // -- 2. infill a selection from the command palette ---------------------------------------------------
  await infillSelection(page, editor);

  // -- 3. a server command that does not exist: one clear error, the server restarted on the change ---
  await missingServer(page);
}

async function missingServer(page) {
  // Change the setting the way a user does: in the user settings.json editor, saved. (VS Code does
  // not reliably notice a settings.json written behind its back.)
  const settings = JSON.parse(fs.readFileSync(path.join(USER_DATA, "User", "settings.json"), "utf8"));
  settings["diffucode.serverCommand"] = ["/nonexistent/bin/diffucode", "lsp"];
  await page.keyboard.press("Escape");
  await runCommand(page, "Preferences: Open User Settings (JSON)");
  // VS Code opens it in a tab or (1.139) in a modal editor: find the editor by its text.
  const jsonEditor = page.locator(".monaco-editor", { hasText: "diffucode.validate" }).last();
  await jsonEditor.waitFor({ timeout: 20_000 });
  await jsonEditor.locator(".view-lines").click();
  await page.keyboard.press("Control+A");
  await page.keyboard.press("Delete");
  await page.keyboard.insertText(JSON.stringify(settings));
  await page.keyboard.press("Control+S");
  log("set diffucode.serverCommand to a missing command in the settings.json editor and saved");
  const toast = page.locator(".notification-toast", { hasText: "was not found" }).first();
  // The extension restarts the server when the setting changes: the error must come without a reload.
  await toast.waitFor({ timeout: 30_000 });
  const saved = JSON.parse(fs.readFileSync(path.join(USER_DATA, "User", "settings.json"), "utf8"));
  if (JSON.stringify(saved["diffucode.serverCommand"]) !== JSON.stringify(settings["diffucode.serverCommand"])) {
    throw new Error(`settings.json was not saved as typed: ${JSON.stringify(saved["diffucode.serverCommand"])}`);
  }
  log("the extension restarted the server on the settings change");
  for (const button of ["How to install", "Open settings"]) {
    if (!(await toast.locator(".monaco-button", { hasText: button }).count())) throw new Error(`the error has no "${button}" button`);
  }
  const item = page.locator('.statusbar-item[id*="diffucode"]').first();
  await waitFor("the status bar item to show the error", async () => (await item.locator(".codicon-error").count()) > 0, 10_000);
  await page.screenshot({ path: path.join(ARTIFACTS, "server-missing.png") });
  log(`missing server reported: ${JSON.stringify((await toast.textContent())?.slice(0, 160))}`);
}

async function openFile(page, name) {
  const tab = page.locator(`.tabs-container .tab[aria-label*="${name}"]`).first();
  // The Explorer shows the workspace folder: click the file there; else use Quick Open.
  for (let attempt = 0; attempt < 4; attempt++) {
    try {
      if (attempt % 2 === 0) {
        const row = page.locator(`.explorer-folders-view .monaco-list-row[aria-label*="${name}"]`).first();
        await row.waitFor({ timeout: 15_000 });
        await row.dblclick();
      } else {
        await page.keyboard.press("Control+P");
        const input = page.locator(".quick-input-widget input");
        await input.waitFor({ state: "visible", timeout: 5000 });
        await input.fill(name);
        await page.locator(".quick-input-list .monaco-list-row", { hasText: name }).first().waitFor({ timeout: 15_000 });
        await page.keyboard.press("Enter");
      }
      await tab.waitFor({ timeout: 10_000 });
      return;
    } catch (err) {
      log(`opening ${name} (attempt ${attempt + 1}): ${err.message.split("\n")[0]}`);
      await page.keyboard.press("Escape");
    }
  }
  throw new Error(`could not open ${name}`);
}

/** The status bar item says the server is ready (its sparkle icon; not starting, loading, stopped or red). */
async function waitForServer(page) {
  const item = page.locator('.statusbar-item[id*="diffucode"], .statusbar-item:has-text("diffucode")').first();
  await item.waitFor({ timeout: 60_000 });
  await waitFor(
    "the diffucode status bar item to say ready",
    async () => {
      if (await item.locator(".codicon-error").count()) throw new Error(`status bar says: ${(await item.getAttribute("aria-label")) ?? ""}`);
      return (await item.locator(".codicon-sparkle").count()) > 0;
    },
    90_000,
    250,
  ).catch(async (err) => {
    throw new Error(`${err.message}; the item: ${JSON.stringify((await item.getAttribute("aria-label")) ?? (await item.textContent()))}`);
  });
  log(`status bar: ${(await item.textContent())?.trim()}`);
}

async function runCommand(page, title) {
  await page.keyboard.press("F1");
  const input = page.locator(".quick-input-widget input");
  await input.waitFor({ state: "visible", timeout: 10_000 });
  await input.fill(`>${title}`);
  const row = page.locator(".quick-input-list .monaco-list-row", { hasText: title }).first();
  await row.waitFor({ timeout: 10_000 });
  await page.keyboard.press("Enter");
}

/** The text of the editor's visible lines, top to bottom (monaco renders spaces as U+00A0). */
async function editorLines(editor) {
  return editor.evaluate((el) => {
    const rows = [...el.querySelectorAll(".view-lines .view-line")].map((n) => ({ top: parseFloat(n.style.top) || 0, text: n.textContent ?? "" }));
    rows.sort((a, b) => a.top - b.top);
    return rows.map((r) => r.text.replace(/\u00a0/g, " "));
  });
}

async function save(page) {
  await page.keyboard.press("Control+S");
  await sleep(700);
  return fs.readFileSync(FILE, "utf8");
}

async function ghostText(page, editor) {
  // Go to the end of the file's last line ("    total = 0" is followed by an empty line) and type.
  await editor.locator(".view-lines").click();
  await page.keyboard.press("Control+End");
  const typed = "    for i in range(";
  await page.keyboard.type(typed, { delay: 40 });
  log(`typed ${JSON.stringify(typed)}`);
  // The part of the ghost text on the cursor's line (more lines, if any, are rendered below it).
  const ghost = page.locator(".monaco-editor .ghost-text-decoration").first();
  const ghostLine = async () => ((await ghost.isVisible()) ? ((await ghost.textContent()) ?? "").replace(/\u00a0/g, " ") : "");
  let firstGhostLine = "";
  for (let attempt = 0; attempt < 8 && !firstGhostLine.trim(); attempt++) {
    try {
      await ghost.waitFor({ state: "visible", timeout: attempt === 0 ? 20_000 : 8_000 });
      // Let the suggestion settle (a newer request may replace it).
      await sleep(300);
      firstGhostLine = await ghostLine();
      if (!firstGhostLine.trim()) {
        log(`ghost text is blank (${JSON.stringify(firstGhostLine)}): next candidate`);
        await page.keyboard.press("Alt+BracketRight");
        await sleep(500);
        firstGhostLine = await ghostLine();
      }
    } catch {
      // Ask explicitly (the server skips its debounce for an invoked request).
      log("no ghost text yet: triggering inline suggestion explicitly");
      await page.keyboard.press("Alt+Backslash");
    }
  }
  if (!firstGhostLine.trim()) {
    await page.screenshot({ path: path.join(ARTIFACTS, "ghost-text-missing.png") });
    throw new Error(`no non-blank ghost text appeared (last: ${JSON.stringify(firstGhostLine)})`);
  }
  const allGhost = (await page.locator(".monaco-editor .ghost-text-decoration, .monaco-editor .ghost-text").allTextContents()).join("").replace(/\u00a0/g, " ");
  log(`ghost text: first line ${JSON.stringify(firstGhostLine)} (all shown: ${JSON.stringify(allGhost)})`);
  await page.screenshot({ path: path.join(ARTIFACTS, "ghost-text.png") });
  const before = await save(page);
  await page.keyboard.press("Tab");
  await sleep(400);
  const after = await save(page);
  if (after === before) throw new Error("Tab did not change the file");
  const typedLine = after.split("\n").find((l) => l.startsWith(typed));
  log(`line after Tab: ${JSON.stringify(typedLine)}`);
  if (typedLine !== typed + firstGhostLine) {
    throw new Error(`the typed line is not the typed text + the ghost text: expected ${JSON.stringify(typed + firstGhostLine)}, got ${JSON.stringify(typedLine)}; file:\n${after}`);
  }
  await page.screenshot({ path: path.join(ARTIFACTS, "ghost-text-accepted.png") });
  log("ghost text accepted with Tab and saved");
}

async function infillSelection(page, editor) {
  // Select the body of area(): lines 5-6 ("    r = radius * radius" / "    return math.pi * r").
  await page.keyboard.press("Escape");
  await page.keyboard.press("Control+Home");
  for (let i = 0; i < 4; i++) await page.keyboard.press("ArrowDown");
  await page.keyboard.press("Home");
  await page.keyboard.press("Home"); // the first Home may stop at the indentation
  for (let i = 0; i < 2; i++) await page.keyboard.press("Shift+ArrowDown");
  const before = fs.readFileSync(FILE, "utf8");
  const selected = before.split("\n").slice(4, 6);
  log(`selected ${JSON.stringify(selected)}`);

  // Record the denoising as it is drawn. Decoration text (contentText) is rendered as CSS
  // ::before content of a span in the line, so read the computed style, not the DOM text.
  await page.evaluate(() => {
    window.__denoise = [];
    const seen = new Set();
    const obs = new MutationObserver(() => {
      for (const line of document.querySelectorAll(".monaco-editor .view-lines .view-line")) {
        const parts = [];
        for (const span of line.querySelectorAll("span")) {
          const before = getComputedStyle(span, "::before").content;
          if (before && before !== "none" && before !== "normal") parts.push(before.replace(/^"|"$/g, ""));
        }
        const t = parts.join("");
        if (t.includes("░") && !seen.has(t)) {
          seen.add(t);
          window.__denoise.push({ t: performance.now(), text: t });
        }
      }
    });
    obs.observe(document.body, { subtree: true, childList: true, characterData: true });
    window.__denoiseObserver = obs;
  });
  await runCommand(page, "diffucode: Infill selection");
  log("ran 'diffucode: Infill selection'");

  // Screenshot while the denoising is on screen (if we are fast enough to see it).
  let shot = false;
  const end = Date.now() + 120_000;
  let after = before;
  while (Date.now() < end) {
    if (!shot) {
      const n = await page.evaluate(() => window.__denoise.length);
      if (n > 0) {
        await page.screenshot({ path: path.join(ARTIFACTS, "denoising.png") });
        shot = true;
        log("denoising decoration on screen (screenshot taken)");
      }
    }
    const lines = await editorLines(editor);
    if (lines.length > 5 && (lines[4] !== selected[0] || lines[5] !== selected[1]) && !lines.slice(4, 6).join("").includes("░")) {
      after = lines;
      break;
    }
    await sleep(shot ? 150 : 30);
  }
  const steps = await page.evaluate(() => {
    window.__denoiseObserver.disconnect();
    return window.__denoise;
  });
  fs.writeFileSync(path.join(ARTIFACTS, "denoise-steps.json"), JSON.stringify(steps, null, 2));
  log(`denoising steps seen in the DOM: ${steps.length}${steps.length ? ` (first: ${JSON.stringify(steps[0].text.replace(/\u00a0/g, " "))})` : ""}`);
  if (after === before) {
    await page.screenshot({ path: path.join(ARTIFACTS, "infill-missing.png") });
    throw new Error("the editor text did not change after Infill selection");
  }
  await sleep(500);
  await page.screenshot({ path: path.join(ARTIFACTS, "infilled.png") });
  const saved = await save(page);
  const diff = saved.split("\n").slice(3, 9);
  log(`file after infill (lines 4-9): ${JSON.stringify(diff)}`);
  if (saved === before) throw new Error("the saved file did not change after Infill selection");
  if (!saved.startsWith("import math\n\n\ndef area(radius):\n")) throw new Error(`infill touched text before the selection:\n${saved}`);
  if (!saved.includes("def perimeter(radius):\n    return 2 * math.pi * radius")) throw new Error(`infill touched text after the selection:\n${saved}`);
  if (steps.length === 0) failures.push("no denoising decoration (░) was seen while Infill selection ran");
  log("infill applied");
}

async function cleanup() {
  try {
    await browser?.close();
  } catch {
    // already gone
  }
  if (codeServer?.pid) {
    try {
      process.kill(-codeServer.pid, "SIGTERM");
    } catch {
      // already gone
    }
    await sleep(1000);
    try {
      process.kill(-codeServer.pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  // Keep the extension host's logs (they hold the language server's output).
  const logs = path.join(USER_DATA, "logs");
  if (fs.existsSync(logs)) fs.cpSync(logs, path.join(ARTIFACTS, "vscode-logs"), { recursive: true });
  if (!opt.keep) fs.rmSync(ROOT, { recursive: true, force: true });
}

let status = 0;
try {
  await main();
  if (failures.length) {
    for (const f of failures) log(`FAIL: ${f}`);
    status = 1;
  } else {
    log("PASS");
  }
} catch (err) {
  log(`FAIL: ${err?.stack ?? err}`);
  status = 1;
  await currentPage?.screenshot({ path: path.join(ARTIFACTS, "failure.png") }).catch(() => undefined);
}
await cleanup();
process.exit(status);
