-- Quarantined bronze records per rule (a record failing several rules counts under each).
SELECT rule, count(*) AS records, min(quarantined_at) AS first_at, max(quarantined_at) AS last_at
FROM (SELECT unnest(rules) AS rule, quarantined_at FROM silver.posts_quarantine)
GROUP BY rule
ORDER BY records DESC, rule;
