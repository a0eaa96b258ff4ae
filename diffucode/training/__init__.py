"""Training diffucode's own model: `diffucode train` (cli.py) and everything it runs, from the corpus to
the exported model folder. The README's layout lists one line per file; docs/training.md tells the story.
Nothing here is imported by the inference path.
"""
