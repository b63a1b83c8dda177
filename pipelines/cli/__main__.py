"""`python -m tootlake.pipelines.cli ...`: what the producer daemon and `tootlake run`'s stages start."""

from tootlake.pipelines.cli import entry

entry()
