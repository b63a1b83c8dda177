-- Top 20 hashtags over all live posts: posts carrying the tag and distinct users who used it.
-- A tag is counted once per post (lower-cased, trimmed, empty tags dropped), as in gold.
WITH live AS (
    SELECT
        post_id,
        CASE WHEN account_acct LIKE '%@%' OR instance IS NULL THEN account_acct
             ELSE account_acct || '@' || instance END AS user_acct,
        list_distinct(list_filter(list_transform(coalesce(hashtags, []), t -> lower(trim(t))),
                                  t -> t IS NOT NULL AND length(t) > 0)) AS tags
    FROM silver.posts
    WHERE NOT is_deleted AND created_at IS NOT NULL
),
post_tags AS (
    SELECT post_id, user_acct, unnest(tags) AS hashtag FROM live
)
SELECT hashtag, count(*) AS posts, count(DISTINCT user_acct) AS users
FROM post_tags
GROUP BY hashtag
ORDER BY posts DESC, hashtag
LIMIT 20;
