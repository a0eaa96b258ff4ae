"""diffucode_evals: the eval harness (`diffucode eval`). See docs/evals.md.

Modules: execution (sandboxed runs), data (tasks, data resolution), prompts (formats, sanitizer),
metrics (pass@k), runner (the resumable loop), report (report.md / report.png), samples (--samples files),
merge (--shard and eval merge), infill_tasks and syntax_trivial (the humaneval-syntax set),
model_generator (engine adapter), cli (the subcommand).
Nothing is imported here, so `import diffucode_evals.execution` stays light.
"""
