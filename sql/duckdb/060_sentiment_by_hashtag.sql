-- Sentiment by hashtag, from gold.sentiment_by_hashtag (written by `tootlake gold`): the 15 most used
-- hashtags with at least 3 scored posts, their label shares and net sentiment (positive - negative share).
SELECT
    hashtag,
    posts,
    scored_posts,
    round(positive_share, 4) AS positive_share,
    round(negative_share, 4) AS negative_share,
    round(net_sentiment, 4) AS net_sentiment
FROM gold.sentiment_by_hashtag
WHERE scored_posts >= 3
ORDER BY posts DESC, hashtag
LIMIT 15;
