-- The order key of the sync: the Delta commit of silver/posts that produced the row (its change data
-- feed `_commit_version`) and the table's id. A row is replaced only by one from a later commit of the
-- same silver table; silver's wall-clock updated_at decides only when the table differs (a new lake) or
-- a row predates these columns. A restore of silver is a later commit, so its rows win.
ALTER TABLE rawposts ADD COLUMN IF NOT EXISTS source_table text;
ALTER TABLE rawposts ADD COLUMN IF NOT EXISTS source_version bigint;
ALTER TABLE processedposts ADD COLUMN IF NOT EXISTS source_table text;
ALTER TABLE processedposts ADD COLUMN IF NOT EXISTS source_version bigint;
