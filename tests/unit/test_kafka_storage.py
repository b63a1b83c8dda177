"""Embedded-broker helpers that need no broker."""

from tootlake.pipelines.ops.services import _kafka_cluster_id


def test_kafka_cluster_ids_never_start_with_a_dash():
    """The storage format command would read such an id as an option (1 in 64 random ids would)."""
    ids = [_kafka_cluster_id() for _ in range(2000)]
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
    assert len(set(ids)) == len(ids)
