"""Operating the pipeline: embedded services (Kafka, PostgreSQL), the supervised `tootlake run`, `status`,
the Spark standalone cluster, the failure drill and the demo."""
