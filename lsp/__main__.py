"""`python -m diffucode_lsp [--tcp HOST:PORT] [--model M] [--device D] [--compile MODE]
[--quantize int8|auto|none] [--log-file F]`."""

import sys

from diffucode_lsp.cli import main

sys.exit(main())
