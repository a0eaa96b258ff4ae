// The interpreter selected in the Python extension (ms-python.python), if it is installed.
import * as vscode from "vscode";

interface PythonApi {
  environments?: { getActiveEnvironmentPath?(resource?: vscode.Uri): { path?: string } | undefined };
  settings?: { getExecutionDetails?(resource?: vscode.Uri): { execCommand?: string[] } | undefined };
}

export async function pythonInterpreter(resource?: vscode.Uri): Promise<string[] | undefined> {
  const ext = vscode.extensions.getExtension<PythonApi>("ms-python.python");
  if (!ext) return undefined;
  try {
    const api = ext.isActive ? ext.exports : await ext.activate();
    const exec = api?.settings?.getExecutionDetails?.(resource)?.execCommand;
    if (exec && exec.length && exec[0]) return exec;
    const path = api?.environments?.getActiveEnvironmentPath?.(resource)?.path;
    if (path) return [path];
  } catch {
    // The Python extension failed to activate: fall back to python3.
  }
  return undefined;
}
