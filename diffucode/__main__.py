import sys

from diffucode.cli import main

sys.exit(main())
