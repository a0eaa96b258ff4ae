"""diffucode_lsp: the language server (pygls 2). See docs/lsp.md.

Files: cli.py (`diffucode lsp` / `python -m diffucode_lsp`), server.py (handlers: inline completion,
code actions, diffucode/infill, progress), worker.py (the single inference thread, lazy model load,
cancellable jobs), documents.py (UTF-16 positions <-> str offsets via pygls, context windows),
settings.py (initializationOptions / didChangeConfiguration), protocol.py (method names, error
codes, answering malformed requests).
"""
