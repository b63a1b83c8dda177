"""Writing to PostgreSQL and Oracle: schema scripts, row staging, the MERGE / upsert targets, retries and
the gold export. The sync job (`pipelines/jobs/sync.py`) drives them."""
