"""The hostile-input campaign in the suite: a few hundred valid and malformed records straight into a real
topic, then bronze -> silver (real models) -> sync on real Spark, Delta and PostgreSQL. Every valid post
arrives once with the text it was sent with, every invalid record is quarantined with a rule, no stage
fails. `tootlake bench fuzz --records N` runs the same campaign at any size through `run --once`."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tootlake.pipelines.bench.fuzz import campaign, load_templates
from tootlake.pipelines.bench.hostile import INVALID, VALID, hostile_records
from tootlake.pipelines.jobs.bronze import run_bronze
from tootlake.pipelines.jobs.silver import run_silver
from tootlake.pipelines.jobs.sync import run_sync
from tootlake.pipelines.ops.drill import drill_settings

pytestmark = pytest.mark.integration


def test_no_record_stops_the_pipeline_and_none_is_lost(spark, settings, postgres_conninfo, kafka_bootstrap,
                                                         unique_name, tmp_path):
    import psycopg2.extensions

    from tootlake.pipelines.ops import services

    port = int(psycopg2.extensions.parse_dsn(postgres_conninfo)["port"])
    own = drill_settings(settings.model_copy(update={"postgres_port": port}), tmp_path,
                         unique_name.replace("-", "_"))
    services.ensure_services(own)  # the test services are up: this creates the campaign's database
    records = hostile_records(300, load_templates(own), seed=2026, now=datetime.now(UTC))
    cases = {r.case for r in records}
    assert {"odd_text", "lone_surrogate", "edits", "delete_unknown", "null_key"} <= cases
    assert {"invalid_utf8", "epoch_overflow", "not_json", "huge_key", "edited_in_future"} <= cases | {
        "invalid_utf8_key"}
    failures: list[str] = []

    def in_process(s) -> int:
        for name, stage in (("bronze", lambda: run_bronze(spark, s, log=lambda _: None)),
                            ("silver", lambda: run_silver(s, spark)),
                            ("sync", lambda: run_sync(s, spark, copy_gold=False, log=lambda _: None))):
            try:
                stage()
            except Exception as exc:  # a failed stage is what the campaign counts
                failures.append(f"{name}: {type(exc).__name__}: {str(exc)[:300]}")
        return len(failures)

    verdict, figures = campaign(own, records, in_process, log=lambda _: None)
    assert failures == []
    assert figures["valid"] == sum(r.expect == VALID for r in records) > 100
    assert figures["invalid"] == sum(r.expect == INVALID for r in records) > 60
    assert verdict.lost == [] and verdict.duplicated == [] and verdict.mismatched == []
    assert verdict.unexpected == [] and verdict.misjudged == [] and verdict.unquarantined == []
    # every expected post, plus those of deeply nested records that stayed within the parser's limits
    assert figures["arrived"] >= figures["expected_posts"] > 80
    assert figures["quarantined"] >= figures["invalid"]
