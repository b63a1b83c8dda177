-- RAWPOSTS: one row per post (latest edit wins), synced from silver/posts.
-- The first eleven columns keep the older system's names so its readers keep working;
-- tootlake's columns follow. Deleted posts are removed (silver tombstone -> DELETE).
CREATE TABLE IF NOT EXISTS rawposts (
    post_id          text         PRIMARY KEY,              -- silver post_id: the status URI
    platform_id      smallint     NOT NULL REFERENCES platforms (platform_id),
    hashtag          text,                                  -- every hashtag, lower-case, comma-separated
    username         text,
    display_name     text,
    post_content     text,                                  -- plain text of the post
    created_at       timestamptz,
    language         text,
    url              text,
    visibility       varchar(32),                           -- public|unlisted|private|direct|limited|...
    collected_at     timestamptz,                           -- when bronze ingested the record
    -- tootlake columns
    instance         text,
    status_id        text,
    account_id       text,
    account_acct     text,
    edited_at        timestamptz,
    sensitive        boolean,
    spoiler_text     text,
    content_html     text,
    text_length      integer,
    is_reblog        boolean,
    replies_count    bigint,
    reblogs_count    bigint,
    favourites_count bigint,
    updated_at       timestamptz  NOT NULL,                 -- silver's updated_at: newer wins
    synced_at        timestamptz  NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS rawposts_created_at_idx ON rawposts (created_at);
