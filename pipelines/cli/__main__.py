"""`python -m tootlake.pipelines.cli ...`: what the producer daemon and `tootlake run`'s stages start."""

import sys

from tootlake.pipelines.cli import main

sys.exit(main())
