"""Data quality between layers: the per-batch guard (rules -> dq.metrics, quarantine, fail before publish),
the Great Expectations suites and the HTML report. The rules themselves live in `expectations/`."""
