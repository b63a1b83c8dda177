-- PLATFORMS: one row per source platform; seeded like the older system (Mastodon, Bluesky, Telegram).
-- Run with `tootlake db init --target oracle` (idempotent: existing objects are kept, the seed is a MERGE).
CREATE TABLE PLATFORMS (
    PLATFORM_ID  NUMBER(5)           NOT NULL,
    NAME         VARCHAR2(50 CHAR)   NOT NULL,
    API_SOURCE   VARCHAR2(200 CHAR),
    CONSTRAINT PLATFORMS_PK PRIMARY KEY (PLATFORM_ID),
    CONSTRAINT PLATFORMS_NAME_UQ UNIQUE (NAME)
);

-- platform_id values are fixed: the sync maps silver's `platform` to them (pipelines/databases/records.py).
MERGE INTO PLATFORMS t
USING (
    SELECT 1 AS PLATFORM_ID, 'Mastodon' AS NAME, 'Mastodon REST and streaming API' AS API_SOURCE FROM DUAL
    UNION ALL SELECT 2, 'Bluesky', 'AT Protocol firehose' FROM DUAL
    UNION ALL SELECT 3, 'Telegram', 'Telegram Bot API' FROM DUAL
) s
ON (t.PLATFORM_ID = s.PLATFORM_ID)
WHEN MATCHED THEN UPDATE SET t.NAME = s.NAME, t.API_SOURCE = s.API_SOURCE
WHEN NOT MATCHED THEN INSERT (PLATFORM_ID, NAME, API_SOURCE) VALUES (s.PLATFORM_ID, s.NAME, s.API_SOURCE);
