"""The catalog: what a table is, what a rule is, and the values the layers share (pure: no I/O, no clock).

- `table.Table`: one table's declaration (name, grain, key, columns, partitioning, rules per hop, the
  Great Expectations suite). Each table is declared once, beside its transform: bronze/posts_raw.py,
  silver/posts.py, silver/quarantine.py, gold/<family>.py, expectations/metrics.py;
- `rules.Rule` / `rules.TableRules`: a data-quality rule and the rules one job checks at one hop;
- `vocab`: threat levels, sentiment labels, platforms, event kinds;
- `registry.TABLES`: every declaration, from which the rules per hop (expectations/tables.py), the GX suites
  (expectations/suites.py), the diff keys (pipelines/lake.py) and the status / DQ views derive.

The layer packages import `table`, `rules` and `vocab`; only `registry` imports the layer packages.
"""
