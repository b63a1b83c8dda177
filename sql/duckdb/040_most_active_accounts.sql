-- The 20 most active accounts (user_acct = acct qualified with its instance, as in gold.user_activity).
WITH live AS (
    SELECT
        CASE WHEN account_acct LIKE '%@%' OR instance IS NULL THEN account_acct
             ELSE account_acct || '@' || instance END AS user_acct,
        created_at,
        text_length
    FROM silver.posts
    WHERE NOT is_deleted AND created_at IS NOT NULL
)
SELECT
    user_acct,
    count(*) AS posts,
    count(DISTINCT CAST(created_at AS DATE)) AS active_days,
    round(avg(text_length), 1) AS avg_text_length,
    min(created_at) AS first_post_at,
    max(created_at) AS last_post_at
FROM live
GROUP BY user_acct
ORDER BY posts DESC, user_acct
LIMIT 20;
