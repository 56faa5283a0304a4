"""`python -m distillation.data ...`: the data commands (cli.py)."""

import sys

from distillation.data.cli import main

sys.exit(main())
