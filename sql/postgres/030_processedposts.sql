-- PROCESSEDPOSTS: one row per post with its threat and sentiment scores (one per RAWPOSTS row).
-- Older system's columns first (processed_id ... processing_status), tootlake's after.
-- A post whose scoring failed is kept with processing_status = 'FAILED' and null scores.
CREATE TABLE IF NOT EXISTS processedposts (
    processed_id            bigint       GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    raw_post_id             text         NOT NULL UNIQUE REFERENCES rawposts (post_id),
    platform_id             smallint     NOT NULL,              -- as in rawposts (checked there by its FK)
    hashtag                 text,
    post_content            text,
    created_at              timestamptz,
    language                text,
    url                     text,
    threat_level            varchar(16),                   -- NONE|LOW|MEDIUM|HIGH
    contains_hate_speech    smallint     CHECK (contains_hate_speech IN (0, 1)),
    processed_at            timestamptz,
    processing_status       varchar(10)  NOT NULL DEFAULT 'SUCCESS'
                                         CHECK (processing_status IN ('SUCCESS', 'FAILED', 'RETRY')),
    -- tootlake columns
    threat_score            double precision,
    threat_label            varchar(32),                   -- none|offensive|hate
    sentiment_label         varchar(32),                   -- negative|neutral|positive
    sentiment_score         double precision,
    threat_model_version    text,
    sentiment_model_version text,
    updated_at              timestamptz  NOT NULL,         -- silver's updated_at: newer wins
    synced_at               timestamptz  NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS processedposts_threat_idx ON processedposts (threat_level, created_at);
