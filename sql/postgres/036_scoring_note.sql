-- Why a post's scores are null on purpose: its language is outside the models' validated coverage
-- (models/coverage.json), e.g. 'language_not_covered:ja', 'language_unknown' (no language given), or
-- 'threat:...' / 'sentiment:...' when only that model declined. Null when every model covers the language.
-- Such a post keeps processing_status 'SUCCESS' (scored as designed; 'FAILED' means a model broke).
ALTER TABLE processedposts ADD COLUMN IF NOT EXISTS scoring_note varchar(100);
