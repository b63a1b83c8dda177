-- PLATFORMS: one row per source platform; seeded like the older system (Mastodon, Bluesky, Telegram).
-- Idempotent: safe to run again (tootlake db init --target postgres runs every file in order).
CREATE TABLE IF NOT EXISTS platforms (
    platform_id  smallint     PRIMARY KEY,
    name         varchar(50)  NOT NULL UNIQUE,
    api_source   varchar(200)
);

-- platform_id values are fixed: the sync maps silver's `platform` to them (pipelines/databases/records.py).
INSERT INTO platforms (platform_id, name, api_source) VALUES
    (1, 'Mastodon', 'Mastodon REST and streaming API'),
    (2, 'Bluesky', 'AT Protocol firehose'),
    (3, 'Telegram', 'Telegram Bot API')
ON CONFLICT (platform_id) DO UPDATE SET name = excluded.name, api_source = excluded.api_source;
