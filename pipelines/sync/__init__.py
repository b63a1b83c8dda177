"""Sync: silver/posts -> PostgreSQL and Oracle (PLATFORMS, RAWPOSTS, PROCESSEDPOSTS) and gold -> PostgreSQL.

`run_sync(settings, spark, target="postgres") -> dict` is the entry point the job and the demo call.
"""

from __future__ import annotations


def run_sync(*args, **kwargs):
    from tootlake.pipelines.sync.runner import run_sync as _run_sync

    return _run_sync(*args, **kwargs)


__all__ = ["run_sync"]
