-- Posts per UTC hour: one row per hour with at least one live post (same grain and columns as
-- gold.posts_hourly, recomputed from silver). Live = not deleted and created_at known.
-- tootlake sql --file sql/duckdb/010_posts_per_hour.sql [--as-of silver.posts=VERSION]
WITH live AS (
    SELECT
        date_trunc('hour', created_at) AS hour_start,
        CASE WHEN account_acct LIKE '%@%' OR instance IS NULL THEN account_acct
             ELSE account_acct || '@' || instance END AS user_acct
    FROM silver.posts
    WHERE NOT is_deleted AND created_at IS NOT NULL
)
SELECT
    CAST(hour_start AS DATE) AS post_date,
    hour_start,
    count(*) AS posts,
    count(DISTINCT user_acct) AS users
FROM live
GROUP BY hour_start
ORDER BY hour_start;
