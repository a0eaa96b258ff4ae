"""``python -m diffucode_evals eval TASKSET ...``: the eval command without the main diffucode CLI."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
