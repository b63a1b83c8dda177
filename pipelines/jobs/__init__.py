"""The layer jobs: one module per layer, each with its run function and a thin `main()` that
`spark-submit pipelines/jobs/<layer>.py` and `tootlake <layer>` both call; plus the streaming and
poison-record isolation machinery they share."""
