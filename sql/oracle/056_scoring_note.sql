-- Why a post's scores are null on purpose (as sql/postgres/036_scoring_note.sql): its language is outside
-- the models' validated coverage (models/coverage.json), e.g. 'language_not_covered:ja', 'language_unknown',
-- or 'threat:...' / 'sentiment:...' when only that model declined; null when every model covers it.
-- New databases get the column from 030/050; these statements add it to a database created before
-- (`tootlake db init` skips ORA-01430, column already exists).
ALTER TABLE PROCESSEDPOSTS ADD (SCORING_NOTE VARCHAR2(100 CHAR));
ALTER TABLE SYNC_STAGE ADD (SCORING_NOTE VARCHAR2(100 CHAR));
