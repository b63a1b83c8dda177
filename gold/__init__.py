"""Gold: aggregates of silver/posts, one pure function per table, each docstring states its grain.

Only live posts count (silver tombstones, `is_deleted = true`, are ignored); days and hours are UTC.
Each table is declared once beside its function (a tootlake.catalog.table.Table: grain, key, columns, rules,
GX suite; e.g. `hashtags.TOP_HASHTAG_DAILY`). Batch tables (`tables.BATCH_TABLES` maps each name to its
function; `tootlake gold --full-refresh` rebuilds them from all of silver, a plain `tootlake gold` only the
keys silver's changes touch, see incremental.py):

| table                | grain                                                    |
|----------------------|----------------------------------------------------------|
| posts_hourly         | one row per UTC hour with >= 1 post                      |
| posts_daily          | one row per UTC day with >= 1 post                       |
| user_activity        | one row per user (user_acct)                             |
| active_users         | one row per user with >= ACTIVE_MIN posts                |
| user_post_length     | one row per user: average plain-text length              |
| hashtags_daily       | one row per UTC day and hashtag                          |
| top_hashtag_daily    | one row per UTC day with a hashtag (ties: smallest tag)  |
| threat_daily         | one row per UTC day: posts per threat level, hate share  |
| threat_by_hashtag    | one row per hashtag (all time)                           |
| threat_by_language   | one row per language ('und' = unknown, all time)         |
| sentiment_daily      | one row per UTC day: posts per sentiment label           |
| sentiment_by_hashtag | one row per hashtag (all time)                           |
| sentiment_by_language| one row per language ('und' = unknown, all time)         |

Streaming (`tootlake gold --stream`): posts_per_minute (one row per 1-minute event-time window) and
late_events (one row per micro-batch: watermark, late rows counted instead of added); see windowed.py.

The threat and sentiment tables count a post silver left unscored on purpose (its language is outside the
model's validated coverage, tootlake.models.coverage) in `unscored_posts` and, explicitly, in
`language_unscored_posts`; shares are over scored posts only.
"""
