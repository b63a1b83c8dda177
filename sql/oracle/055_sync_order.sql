-- The order key of the sync (as sql/postgres/035_sync_order.sql): the Delta commit of silver/posts that
-- wrote a row (its change data feed `_commit_version`) and the table's id. A row is replaced only by one
-- from a later commit of the same silver table; UPDATED_AT decides only when the table differs (a new
-- lake) or a row predates these columns. New databases get the columns from 020/030/050; these statements
-- add them to a database created before (`tootlake db init` skips ORA-01430, column already exists).
ALTER TABLE RAWPOSTS ADD (SOURCE_TABLE VARCHAR2(64 CHAR), SOURCE_VERSION NUMBER(19));
ALTER TABLE PROCESSEDPOSTS ADD (SOURCE_TABLE VARCHAR2(64 CHAR), SOURCE_VERSION NUMBER(19));
ALTER TABLE SYNC_STAGE ADD (SOURCE_TABLE VARCHAR2(64 CHAR), SOURCE_VERSION NUMBER(19));
