-- Bronze records vs quarantined records, and the share silver rejected.
SELECT
    (SELECT count(*) FROM bronze.posts_raw) AS bronze_records,
    (SELECT count(*) FROM silver.posts_quarantine) AS quarantined_records,
    round((SELECT count(*) FROM silver.posts_quarantine)
          / nullif((SELECT count(*) FROM bronze.posts_raw), 0), 4) AS quarantined_share;
