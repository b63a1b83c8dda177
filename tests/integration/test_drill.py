"""Reliability drill (issue 10): SIGKILL every stage of `tootlake run`, stop Kafka and PostgreSQL for 30 s
each; every produced post must end up in PostgreSQL exactly once. Takes ~8-10 min on 2 cores."""

from __future__ import annotations

import re

import pytest

from tootlake.pipelines.ops.drill import Drill, drill_settings, report_json


@pytest.mark.integration
def test_drill_every_post_synced_exactly_once(settings, kafka_bootstrap, postgres_conninfo, shared_data,
                                              tmp_path, unique_name) -> None:
    lines: list[str] = []

    def log(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    drill_conf = drill_settings(settings, tmp_path / "drill", unique_name)
    drill = Drill(drill_conf, log=log, rate=5.0, outage_s=30.0)
    report = drill.run()
    # The figures outlive pytest's captured output: var/test/log/drill-report.json (and the summary).
    out = settings.path(settings.log_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "drill-report.json").write_text(report_json(report) + "\n")
    (out / "drill-summary.txt").write_text(report.summary() + "\n")
    assert report.passed, report.summary()
    assert report.expected_posts > 900 and report.rawposts == report.expected_posts - report.quarantined
    assert report.bronze_rows >= report.produced_events  # the killed producer replays: duplicates in bronze
    faults = ("kill bronze", "kill silver", "kill gold", "kill sync", "Kafka outage", "PostgreSQL outage")
    for fault in faults:
        assert report.recovery_s.get(fault) is not None, f"no recovery observed after {fault}"
    # `tootlake status` told the truth while a service was down
    text = "\n".join(lines)
    kafka_down = text.split("tootlake status: Kafka down")[1].split("[drill]")[0]
    assert re.search(r"kafka +DOWN", kafka_down) and re.search(r"postgres +up", kafka_down)
    pg_down = text.split("tootlake status: PostgreSQL down")[1].split("[drill]")[0]
    assert re.search(r"postgres +DOWN", pg_down) and re.search(r"kafka +up", pg_down)
    # the supervisor's view was there too: five stages, none crash-looping at the end
    drained = text.split("tootlake status: drained")[1].split("[drill]")[0]
    assert "HEALTHY" in drained.splitlines()[1] and "NOT HEALTHY" not in drained
