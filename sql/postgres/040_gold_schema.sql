-- Schema for the gold tables. `tootlake sync --target postgres` copies every Delta table under
-- the lake's gold/ folder here, one table per Delta table (same name, same columns; structs are
-- flattened to <column>_<field>, arrays and maps become jsonb), replaced in one transaction per run.
CREATE SCHEMA IF NOT EXISTS gold;
