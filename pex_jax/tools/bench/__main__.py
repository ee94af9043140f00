"""`python -m pex_jax.tools.bench`: see `pex_jax.tools.bench.cli`."""

import sys

from pex_jax.tools.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
