"""The SQL scripts, shipped as package data of `tootlake.sql` (read with `tootlake.package_data`):
postgres/ and oracle/ (`tootlake db init`), duckdb/ (the notebooks' and `tootlake sql`'s queries)."""
