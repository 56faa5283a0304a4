"""`python -m distillation.jobs probe [--quick] PRESET --key=value ...`: the estimate's probe process."""

import sys

from distillation.jobs.probe import main

sys.exit(main())
