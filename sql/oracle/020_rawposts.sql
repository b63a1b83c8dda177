-- RAWPOSTS: one row per post (latest edit wins), synced from silver/posts.
-- The older system's columns first (same names), tootlake's after. Timestamps are UTC without zone.
-- Booleans are NUMBER(1) 0/1. A value longer than its VARCHAR2 column is rejected before the database
-- sees it, never cut (pipelines/databases/oracle.py, check_rows).
CREATE TABLE RAWPOSTS (
    POST_ID          VARCHAR2(1000 CHAR)  NOT NULL,
    PLATFORM_ID      NUMBER(5)            NOT NULL,
    HASHTAG          VARCHAR2(1000 CHAR),
    USERNAME         VARCHAR2(255 CHAR),
    DISPLAY_NAME     VARCHAR2(500 CHAR),
    POST_CONTENT     CLOB,
    CREATED_AT       TIMESTAMP(6),
    LANGUAGE         VARCHAR2(35 CHAR),
    URL              VARCHAR2(1000 CHAR),
    VISIBILITY       VARCHAR2(32 CHAR),
    COLLECTED_AT     TIMESTAMP(6),
    INSTANCE         VARCHAR2(255 CHAR),
    STATUS_ID        VARCHAR2(64 CHAR),
    ACCOUNT_ID       VARCHAR2(64 CHAR),
    ACCOUNT_ACCT     VARCHAR2(500 CHAR),
    EDITED_AT        TIMESTAMP(6),
    SENSITIVE        NUMBER(1),
    SPOILER_TEXT     CLOB,
    CONTENT_HTML     CLOB,
    TEXT_LENGTH      NUMBER(10),
    IS_REBLOG        NUMBER(1),
    REPLIES_COUNT    NUMBER(19),
    REBLOGS_COUNT    NUMBER(19),
    FAVOURITES_COUNT NUMBER(19),
    UPDATED_AT       TIMESTAMP(6)         NOT NULL,
    SOURCE_TABLE     VARCHAR2(64 CHAR),    -- silver/posts' Delta table id
    SOURCE_VERSION   NUMBER(19),           -- its commit that wrote the row: the order key
    SYNCED_AT        TIMESTAMP(6)         DEFAULT SYS_EXTRACT_UTC(SYSTIMESTAMP) NOT NULL,
    CONSTRAINT RAWPOSTS_PK PRIMARY KEY (POST_ID),
    CONSTRAINT RAWPOSTS_PLATFORM_FK FOREIGN KEY (PLATFORM_ID) REFERENCES PLATFORMS (PLATFORM_ID)
);

CREATE INDEX RAWPOSTS_CREATED_IX ON RAWPOSTS (CREATED_AT);
