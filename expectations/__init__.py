"""Data-quality rules per table (tables.py) and how they are counted in one Spark pass (rules.py).

Running them (metrics table, quarantine, fail before publish) is pipelines/quality/guard.py; the Great
Expectations suites of the published tables are suites.py, run by pipelines/quality/gx.py.
"""
