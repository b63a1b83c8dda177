-- Threat share by post language (null language = 'und'): live posts, posts per threat level and the
-- shares of scored posts that are a threat (LOW/MEDIUM/HIGH) and hate speech.
SELECT
    coalesce(lower(language), 'und') AS language,
    count(*) AS posts,
    count(threat_level) AS scored_posts,
    count(*) FILTER (WHERE upper(threat_level) = 'NONE') AS none_posts,
    count(*) FILTER (WHERE upper(threat_level) = 'LOW') AS low_posts,
    count(*) FILTER (WHERE upper(threat_level) = 'MEDIUM') AS medium_posts,
    count(*) FILTER (WHERE upper(threat_level) = 'HIGH') AS high_posts,
    round(count(*) FILTER (WHERE upper(threat_level) IN ('LOW', 'MEDIUM', 'HIGH'))
          / nullif(count(threat_level), 0), 4) AS threat_share,
    round(count(*) FILTER (WHERE contains_hate_speech = 1)
          / nullif(count(contains_hate_speech), 0), 4) AS hate_share
FROM silver.posts
WHERE NOT is_deleted AND created_at IS NOT NULL
GROUP BY 1
ORDER BY posts DESC, language;
