"""Files of the lake and the checkpoints wherever they live: a local folder or S3-compatible object storage.

Delta tables themselves go through `pipelines/lake.py` (delta-rs / Spark); this module is for the few
plain-file operations around them, without a JVM: listing the lake's folders (table discovery), deleting a
table's folder, reading a stream checkpoint's files (`tootlake status`), creating the bucket. A location is
what `Settings.location` returns: a local path or an `s3a://bucket/prefix` URI; S3 is reached with
pyarrow's S3 filesystem, configured from the same settings as delta-rs and Spark.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from pyarrow import fs as pafs

from tootlake.pipelines.settings import Settings, is_object_store

S3_CLIENT_STARTED = False  # set once this process made a pyarrow S3 filesystem (see cli.entry)


def s3_filesystem(settings: Settings, allow_bucket_creation: bool = False) -> pafs.S3FileSystem:
    """pyarrow's S3 filesystem for the configured endpoint, region, addressing style and keys."""
    global S3_CLIENT_STARTED
    S3_CLIENT_STARTED = True
    # The AWS SDK inside pyarrow sends flexible checksums (a trailing CRC, streaming payload) by default;
    # S3-compatible stores such as s3proxy reject that upload (XAmzContentSHA256Mismatch). Checksums only
    # where an operation requires them works on AWS S3 and on those stores. Read when the SDK starts, so
    # set before the first S3 filesystem of the process; a value in the environment wins.
    os.environ.setdefault("AWS_REQUEST_CHECKSUM_CALCULATION", "WHEN_REQUIRED")
    os.environ.setdefault("AWS_RESPONSE_CHECKSUM_VALIDATION", "WHEN_REQUIRED")
    url = settings.s3_endpoint_url()
    scheme, _, host = url.partition("://")
    keys = settings.s3_keys()
    return pafs.S3FileSystem(
        access_key=keys[0] if keys else None, secret_key=keys[1] if keys else None,
        region=settings.s3_region, endpoint_override=host, scheme=scheme,
        force_virtual_addressing=not settings.s3_path_style, connect_timeout=5, request_timeout=30,
        allow_bucket_creation=allow_bucket_creation,
    )


def resolve(settings: Settings, location: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path in it) of a location: `s3a://bucket/key` -> (S3, "bucket/key")."""
    if is_object_store(location):
        return s3_filesystem(settings), location.removeprefix("s3a://").rstrip("/")
    return pafs.LocalFileSystem(), location


def subfolders(settings: Settings, location: str) -> list[str]:
    """Names of the folders directly under `location` (sorted; [] when there is none)."""
    filesystem, path = resolve(settings, location)
    try:
        infos = filesystem.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    except OSError:
        return []
    return sorted(info.base_name for info in infos if info.type == pafs.FileType.Directory)


def is_folder(settings: Settings, location: str) -> bool:
    """Whether `location` is a folder (on S3: a prefix with at least one object under it)."""
    filesystem, path = resolve(settings, location)
    return filesystem.get_file_info(path).type == pafs.FileType.Directory


def delete_folder(settings: Settings, location: str) -> None:
    """Delete a folder and everything under it; nothing when it is not there."""
    filesystem, path = resolve(settings, location)
    if filesystem.get_file_info(path).type == pafs.FileType.Directory:
        filesystem.delete_dir(path)


def read_text(settings: Settings, location: str) -> str:
    filesystem, path = resolve(settings, location)
    with filesystem.open_input_stream(path) as stream:
        return stream.read().decode("utf-8")


def modified_at(settings: Settings, location: str) -> datetime | None:
    """When the file at `location` was last written (None when it is not there)."""
    filesystem, path = resolve(settings, location)
    info = filesystem.get_file_info(path)
    if info.type == pafs.FileType.NotFound or info.mtime is None:
        return None
    return info.mtime.astimezone(UTC)


def file_names(settings: Settings, location: str) -> list[str]:
    """Names of the files directly under `location` (sorted; [] when there is none)."""
    filesystem, path = resolve(settings, location)
    try:
        infos = filesystem.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    except OSError:
        return []
    return sorted(info.base_name for info in infos if info.type == pafs.FileType.File)


def ensure_bucket(settings: Settings, location: str) -> None:
    """Create the bucket of an s3a:// location when it does not exist yet (the embedded store)."""
    if not is_object_store(location):
        return
    bucket = location.removeprefix("s3a://").split("/", 1)[0]
    filesystem = s3_filesystem(settings, allow_bucket_creation=True)
    if filesystem.get_file_info(bucket).type == pafs.FileType.NotFound:
        filesystem.create_dir(bucket)


def write_text(settings: Settings, location: str, text: str) -> None:
    """Write a small text file (creating its folder on a local disk)."""
    filesystem, path = resolve(settings, location)
    if not is_object_store(location):
        filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with filesystem.open_output_stream(path) as out:
        out.write(text.encode("utf-8"))


def is_file(settings: Settings, location: str) -> bool:
    filesystem, path = resolve(settings, location)
    return filesystem.get_file_info(path).type == pafs.FileType.File


def exit_process(code: int) -> None:
    """End the process with `code` (a job's or the CLI's `__main__`). A process that used pyarrow's S3
    client (a lake on object storage) ends with os._exit once its output is flushed: the AWS SDK's threads
    can abort the interpreter's teardown ("terminate called without an active exception", exit -6) after
    the work is done and printed."""
    if S3_CLIENT_STARTED:
        import logging
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code)
    raise SystemExit(code)
