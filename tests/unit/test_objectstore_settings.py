"""Lake and checkpoints on s3a:// URIs: the settings, delta-rs storage options and Spark's fs.s3a conf."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tootlake.pipelines.ops.supervisor import TableReady, continuous_stages
from tootlake.pipelines.settings import SettingsError, load_settings


def _s3(tmp_path: Path, **extra: object):
    return load_settings(tootlake_home=tmp_path, lake_dir="s3a://lake-bucket/tootlake/",
                         checkpoint_dir="s3a://lake-bucket/checkpoints", **extra)


def test_a_local_lake_stays_a_local_path(tmp_path: Path) -> None:
    settings = load_settings(tootlake_home=tmp_path)
    assert settings.table_uri("silver.posts") == str(tmp_path / "var" / "lake" / "silver" / "posts")
    assert settings.checkpoint_uri("bronze") == str(tmp_path / "var" / "checkpoints" / "bronze")
    assert not settings.uses_object_store and settings.delta_storage_options() is None
    assert settings.spark_s3a_conf() == {}


def test_s3a_uris_map_tables_and_checkpoints(tmp_path: Path) -> None:
    settings = _s3(tmp_path)
    assert settings.table_uri("silver.posts") == "s3a://lake-bucket/tootlake/silver/posts"
    assert settings.checkpoint_uri("silver") == "s3a://lake-bucket/checkpoints/silver"
    assert settings.uses_object_store and settings.uses_embedded_s3
    with pytest.raises(SettingsError, match="object-store URI"):
        settings.table_path("silver.posts")


@pytest.mark.parametrize("bad", ["s3://bucket/x", "gs://bucket/x", "s3a://"])
def test_other_schemes_and_bucketless_uris_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(SettingsError, match="LAKE_DIR"):
        load_settings(tootlake_home=tmp_path, lake_dir=bad)


def test_embedded_store_options_come_from_its_key_file(tmp_path: Path) -> None:
    settings = _s3(tmp_path, s3proxy_port=29000)
    keys = settings.s3_credentials_file
    keys.parent.mkdir(parents=True)
    keys.write_text(json.dumps({"access_key_id": "AK", "secret_access_key": "SK"}))
    options = settings.delta_storage_options()
    assert options == {"AWS_ENDPOINT_URL": "http://127.0.0.1:29000", "AWS_REGION": "us-east-1",
                       "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false", "AWS_ALLOW_HTTP": "true",
                       "AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK",
                       "AWS_S3_ALLOW_UNSAFE_RENAME": "true"}
    conf = settings.spark_s3a_conf()
    assert conf["spark.hadoop.fs.s3a.endpoint"] == "http://127.0.0.1:29000"
    assert conf["spark.hadoop.fs.s3a.path.style.access"] == "true"
    assert conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "false"
    assert conf["spark.hadoop.fs.s3a.access.key"] == "AK" and conf["spark.hadoop.fs.s3a.secret.key"] == "SK"


def test_external_endpoint_tls_region_style_and_secret_keys(tmp_path: Path) -> None:
    settings = _s3(tmp_path, s3_endpoint="s3.eu-west-1.amazonaws.com", s3_region="eu-west-1",
                   s3_path_style=False, s3_access_key_id="AKIA", s3_secret_access_key="very-secret",
                   s3_delta_rs_commit="conditional_put")
    assert not settings.uses_embedded_s3
    assert settings.s3_endpoint_url() == "https://s3.eu-west-1.amazonaws.com"
    options = settings.delta_storage_options()
    assert options["AWS_ALLOW_HTTP"] == "false" and options["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] == "true"
    assert options["AWS_CONDITIONAL_PUT"] == "etag" and "AWS_S3_ALLOW_UNSAFE_RENAME" not in options
    assert settings.spark_s3a_conf()["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "true"
    assert "very-secret" not in repr(settings) and "very-secret" not in str(settings.model_dump())
    assert {"s3_access_key_id", "s3_secret_access_key"} <= set(type(settings).secret_names())
    plain = _s3(tmp_path, s3_endpoint="minio.local:9000", s3_tls=False)
    assert plain.s3_endpoint_url() == "http://minio.local:9000"


def test_stages_wait_for_a_table_on_the_store_not_a_folder(tmp_path: Path) -> None:
    # a JVM per stage: the supervisor waits (the one application waits itself, with the Lake's exists())
    per_stage = _s3(tmp_path).model_copy(update={"run_one_app": False})
    stages = {stage.name: stage for stage in continuous_stages(per_stage, producer=False)}
    (need,) = stages["silver"].needs
    assert isinstance(need, TableReady) and str(need) == "s3a://lake-bucket/tootlake/bronze/posts_raw"
    assert not need.exists()  # no store answers here: not ready, no exception
