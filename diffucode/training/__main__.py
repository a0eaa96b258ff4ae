"""`python -m diffucode.training ...`: `diffucode train` as a module, what torchrun runs
(`torchrun --nproc_per_node N -m diffucode.training --out runs/base ...`)."""

import sys

from diffucode.training.cli import main, process_start

if __name__ == "__main__":
    sys.exit(main(t_start=process_start()))
