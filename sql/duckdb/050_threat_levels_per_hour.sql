-- Threat levels over time: live posts per UTC hour and threat level (unscored posts as 'UNSCORED').
-- Long format (one row per hour and level) so it plots as stacked bars or lines directly.
SELECT
    date_trunc('hour', created_at) AS hour_start,
    coalesce(upper(threat_level), 'UNSCORED') AS threat_level,
    count(*) AS posts
FROM silver.posts
WHERE NOT is_deleted AND created_at IS NOT NULL
GROUP BY ALL
ORDER BY hour_start, threat_level;
