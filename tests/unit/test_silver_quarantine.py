"""silver.parse + silver.quarantine: explicit-schema parsing of both status forms, every quarantine rule."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pyspark.sql import functions as F

from tootlake.silver.parse import parse_records
from tootlake.silver.quarantine import RULE_NAMES, quarantine, rules, with_rule_failures
from tootlake.silver.schema import QUARANTINE_SCHEMA

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
BRONZE_DDL = ("key string, value string, topic string, partition int, offset long, "
              "kafka_timestamp timestamp, ingested_at timestamp, ingest_date date")


def status(**overrides):
    base = {
        "id": "111263101595545554",
        "uri": "https://mastodon.social/users/a/statuses/111263101595545554",
        "url": "https://mastodon.social/@a/111263101595545554",
        "created_at": "2023-10-20T15:55:35.889Z",
        "edited_at": None,
        "language": "en",
        "visibility": "public",
        "sensitive": False,
        "spoiler_text": "",
        "content": '<p>Hello <a href="https://mastodon.social/tags/Cats" class="hashtag">#<span>Cats</span>'
                   "</a></p>",
        "reblog": None,
        "replies_count": 1,
        "reblogs_count": 2,
        "favourites_count": 3,
        "account": {"id": "109", "acct": "a", "username": "a", "display_name": "A"},
        "tags": [{"name": "Cats", "url": "https://mastodon.social/tags/cats"}],
    }
    base.update(overrides)
    return base


def envelope(st, event="status", **overrides):
    env = {"schema_version": 1, "event": event, "instance": "mastodon.social",
           "fetched_at": "2023-10-20T16:00:00.000Z", "status": st}
    env.update(overrides)
    return json.dumps(env)


def bronze(spark, values, key="mastodon.social/111263101595545554"):
    ts = datetime(2023, 10, 20, 16, 0, 1)
    rows = [(key, v, "t", 0, i, ts, ts, ts.date()) for i, v in enumerate(values)]
    return spark.createDataFrame(rows, BRONZE_DDL)


def judge(spark, values, **kwargs):
    return with_rule_failures(parse_records(bronze(spark, values)), NOW, **kwargs)


def rules_of(spark, cases: dict[str, str], **kwargs) -> dict[str, list[str]]:
    names = list(cases)
    df = judge(spark, [cases[n] for n in names], **kwargs)
    rows = df.orderBy("bronze_offset").select("rules").collect()
    return {name: list(row.rules) for name, row in zip(names, rows, strict=True)}


def test_valid_records_pass_every_rule(spark):
    got = rules_of(spark, {
        "rest": envelope(status()),
        "int ids (Mastodon.py)": envelope(status(id=111263101595545554, account={"id": 109, "acct": "a"},
                                                 created_at="2023-10-19T18:29:57.331000+00:00")),
        "edit": envelope(status(edited_at="2023-10-21T10:00:00.000Z"), event="status.update"),
        "delete": envelope({"id": "111263101595545554"}, event="delete"),
        "mastopy wrapper": envelope({"_mastopy_version": "2.0.1", "_mastopy_type": "Status",
                                     "_mastopy_data": status(), "_mastopy_extra_data": {}}),
        "five minutes skew": envelope(status(created_at=(NOW + timedelta(minutes=4)).isoformat())),
    })
    assert got == {name: [] for name in got}


def test_each_rule_fires_on_its_own_case(spark):
    no_created = status()
    del no_created["created_at"]
    cases = {
        "invalid_json": '{"schema_version": 1, "event": "status", "status": {',
        "unknown_schema_version": envelope(status(), schema_version=2),
        "unknown_event": envelope(status(), event="status.bogus"),
        "wrong_type": envelope(status(sensitive="yes")),
        "missing_id": envelope(status(id=None)),
        "missing_created_at": envelope(no_created),
        "missing_account": envelope(status(account={"acct": "a"})),
        "invalid_timestamp": envelope(status(created_at="last tuesday")),
        "oversized_content": envelope(status(content="<p>" + "x" * 200 + "</p>")),
        "created_at_in_future": envelope(status(created_at="2027-01-01T00:00:00Z")),
        "created_at_before_mastodon": envelope(status(created_at="2016-03-15T23:59:59Z")),
        "field_too_long": envelope(status(visibility="public" * 10)),
        "edited_at_out_of_range": envelope(status(edited_at="2999-01-01T00:00:00Z"), event="status.update"),
        "fetched_at_out_of_range": envelope(status(), fetched_at="2999-01-01T00:00:00Z"),
    }
    assert [r.name for r in rules(NOW, 100, timedelta(minutes=5))] == list(RULE_NAMES)
    # invalid_utf8 needs bytes a Python str cannot hold: test_invalid_utf8_is_quarantined_readably
    assert set(cases) | {"invalid_utf8"} == set(RULE_NAMES), "every rule needs a case here"
    got = rules_of(spark, cases, max_content_chars=100)
    assert got == {name: [name] for name in cases}


def test_wrong_types_and_shapes(spark):
    got = rules_of(spark, {
        "id is an object": envelope(status(id={"x": 1})),
        "id is a boolean": envelope(status(id=True)),
        "account is a string": envelope(status(account="someone")),
        "count is text": envelope(status(replies_count="many")),
        "status is a list": envelope([status()]),
        "schema_version is text": envelope(status(), schema_version="one"),
        "value is a JSON array": json.dumps([1, 2]),
        "value is empty": "",
    })
    assert got == {
        "id is an object": ["wrong_type"],
        "id is a boolean": ["wrong_type"],
        "account is a string": ["wrong_type", "missing_account"],
        "count is text": ["wrong_type"],
        "status is a list": ["wrong_type", "missing_id", "missing_created_at", "missing_account"],
        "schema_version is text": ["unknown_schema_version", "wrong_type"],
        "value is a JSON array": ["invalid_json"],
        "value is empty": ["invalid_json"],
    }


def test_every_failed_rule_is_recorded_with_the_first_reason(spark):
    df = judge(spark, [envelope(status(id=None, account=None, created_at=None), schema_version=7)])
    row = df.select("rules", "reason").first()
    assert list(row.rules) == ["unknown_schema_version", "missing_id", "missing_created_at",
                               "missing_account"]
    assert "schema_version" in row.reason


def test_delete_needs_only_an_id(spark):
    got = rules_of(spark, {"ok": envelope({"id": 5}, event="delete"),
                           "no id": envelope({}, event="delete")})
    assert got == {"ok": [], "no id": ["missing_id"]}


def test_both_forms_parse_to_the_same_values(spark):
    rest = status()
    mastopy = status(id=111263101595545554, created_at="2023-10-20T15:55:35.889000+00:00",
                     account={"id": 109, "acct": "a", "username": "a", "display_name": "A"})
    rows = judge(spark, [envelope(rest), envelope(mastopy)]).orderBy("bronze_offset").collect()
    for row in rows:
        assert row.status_id == "111263101595545554"  # exact digits: ints above 2^53 never go via double
        assert row.account_id == "109"
        assert row.created_at == datetime(2023, 10, 20, 15, 55, 35, 889000)  # session zone is UTC
        assert row.post_id == "mastodon.social/111263101595545554"
        assert row.fetched_at == datetime(2023, 10, 20, 16, 0)
        assert list(row.tag_names) == ["Cats"]
        assert (row.replies_count, row.reblogs_count, row.favourites_count) == (1, 2, 3)


def test_post_id_rebuilt_from_instance_and_id_when_the_key_is_missing(spark):
    df = with_rule_failures(parse_records(bronze(spark, [envelope(status(id=42))], key=None)), NOW)
    assert df.select("post_id").first()[0] == "mastodon.social/42"


def test_real_samples_parse_without_failures(spark, shared_data):
    values = []
    for folder, n in [("mastodon-public-timeline-2023", 60), ("mastodon-mastodonpy-serialized-2023", 32),
                      ("mastodon-api-fixtures-mastodonpy", 60)]:
        with open(shared_data / folder / "statuses.dev.jsonl", encoding="utf-8") as handle:
            for _, line in zip(range(n), handle, strict=False):
                values.append(envelope(json.loads(line)))
    df = judge(spark, values)
    failures = df.where(F.size("rules") > 0).count()
    assert failures == 0
    assert df.where("created_at IS NULL OR status_id IS NULL OR account_id IS NULL").count() == 0


def test_quarantine_rows_have_the_contract_schema(spark):
    bad = '{"oops"'
    df = quarantine(judge(spark, [bad, envelope(status())]), F.lit(datetime(2026, 1, 1)).cast("timestamp"))
    assert df.schema.simpleString() == QUARANTINE_SCHEMA.simpleString()
    rows = df.collect()
    assert len(rows) == 1
    assert rows[0].value == bad and list(rows[0].rules) == ["invalid_json"] and rows[0].bronze_offset == 0


@pytest.mark.parametrize("created_at", ["2026-11-23T14:06:00Z", "2030-01-01T00:00:00+00:00"])
def test_future_is_relative_to_the_time_passed_in(spark, created_at):
    later = rules_of(spark, {"x": envelope(status(created_at=created_at))})
    assert later == {"x": ["created_at_in_future"]}


def test_now_may_be_a_column_as_in_the_stream(spark):
    """The stream judges against current_timestamp() (each micro-batch's trigger time): the tolerance is
    added to the column as it is to an instant."""
    now = F.lit(NOW.replace(tzinfo=None)).cast("timestamp")  # the session is UTC
    cases = {"inside": "2026-11-23T14:04:00Z", "outside": "2026-11-23T14:06:00Z"}
    got = rules_of(spark, {n: envelope(status(created_at=c)) for n, c in cases.items()})
    values = [envelope(status(created_at=c)) for c in cases.values()]
    judged = with_rule_failures(parse_records(bronze(spark, values)), now).orderBy("bronze_offset")
    assert [list(r.rules) for r in judged.select("rules").collect()] == [got["inside"], got["outside"]]
    assert got == {"inside": [], "outside": ["created_at_in_future"]}


def test_invalid_utf8_is_quarantined_readably(spark):
    good = envelope(status())
    df = bronze(spark, [good, good]).withColumn(
        "value", F.when(F.col("offset") == 1, F.concat(F.lit(good[:-1]), F.unhex(F.lit("ff")).cast("string"),
                                                      F.lit("}"))).otherwise(F.col("value")))
    judged = with_rule_failures(parse_records(df), NOW)
    assert [list(r.rules) for r in judged.orderBy("bronze_offset").select("rules").collect()] == [
        [], ["invalid_utf8", "invalid_json"]]
    rows = quarantine(judged, F.lit(datetime(2026, 1, 1)).cast("timestamp")).collect()
    assert len(rows) == 1 and "\ufffd" in rows[0].value  # readable by Python, DuckDB, delta-rs


@pytest.mark.parametrize("field,value,rule", [
    # every one of these made the whole micro-batch fail (CAST_OVERFLOW) or crashed sync (year > 9999)
    ("created_at", "1697740197123456", "invalid_timestamp"),
    ("created_at", 1697740197123456, "invalid_timestamp"),
    ("created_at", "-9999999999999999", "invalid_timestamp"),
    ("created_at", "+10000-01-01T00:00:00Z", "invalid_timestamp"),
    ("created_at", "9999999999999999.5", "invalid_timestamp"),
    ("edited_at", "1697740197123456", "invalid_timestamp"),
    ("edited_at", "+99999-01-01T00:00:00Z", "invalid_timestamp"),
    ("fetched_at", "1697740197123456", "invalid_timestamp"),
    ("fetched_at", 99999999999999999999, "invalid_timestamp"),
])
def test_overflowing_timestamps_are_quarantined_not_fatal(spark, field, value, rule):
    if field == "fetched_at":
        value_json = envelope(status(), fetched_at=value)
    else:
        value_json = envelope(status(**{field: value}), event="status.update")
    rows = judge(spark, [value_json, envelope(status())]).orderBy("bronze_offset").collect()
    assert list(rows[0].rules) == [rule]
    assert list(rows[1].rules) == []


def test_a_far_future_edit_is_not_a_version(spark):
    got = rules_of(spark, {"x": envelope(status(edited_at="2100-01-01T00:00:00Z"), event="status.update"),
                           "ok": envelope(status(edited_at="2026-11-23T13:59:00Z"), event="status.update")})
    assert got == {"x": ["edited_at_out_of_range"], "ok": []}


@pytest.mark.parametrize("field", ["status_id", "instance", "visibility", "language", "url", "key"])
def test_values_longer_than_a_sync_column_are_quarantined(spark, field):
    long_value = "é" * 1001
    if field == "key":
        df = judge_with_key(spark, long_value)
    elif field == "status_id":
        df = judge(spark, [envelope(status(id="9" * 65))])
    elif field == "instance":
        df = judge(spark, [envelope(status(), instance=long_value)])
    else:
        df = judge(spark, [envelope(status(**{field: long_value}))])
    assert "field_too_long" in df.first().rules


def judge_with_key(spark, key):
    return with_rule_failures(parse_records(bronze(spark, [envelope(status())], key=key)), NOW)


def test_objects_or_arrays_where_text_belongs_are_wrong_types(spark):
    got = rules_of(spark, {
        "content object": envelope(status(content={"html": "<p>x</p>"})),
        "language array": envelope(status(language=["en"])),
        "acct boolean": envelope(status(account={"id": "1", "acct": True})),
        "instance array": envelope(status(), instance=["mastodon.social"]),
        "event object": envelope(status(), event={"e": 1}),
        "epoch created_at is fine": envelope(status(created_at=1697740197)),
    })
    assert got == {"content object": ["wrong_type"], "language array": ["wrong_type"],
                   "acct boolean": ["wrong_type"], "instance array": ["wrong_type"],
                   "event object": ["unknown_event", "wrong_type"], "epoch created_at is fine": []}


def test_lone_surrogate_escapes_become_the_replacement_character(spark):
    content = "<p>half \ud83d, low \udc00, pair \U0001F600, text \\ud83d</p>"
    value = json.dumps({"schema_version": 1, "event": "status", "instance": "mastodon.social",
                        "fetched_at": "2023-10-20T16:00:00.000Z", "status": status(content=content)})
    row = judge(spark, [value]).first()
    assert list(row.rules) == []
    assert row.content_html == "<p>half \ufffd, low \ufffd, pair \U0001F600, text \\ud83d</p>"
