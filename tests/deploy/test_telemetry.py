"""The metrics hash contract (``deploy.telemetry``): keys, the publish commands, and decoding what Redis gives back."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from deploy import telemetry


def test_keys_name_role_and_index_and_refuse_an_unknown_role() -> None:
    assert telemetry.key("shard", 3) == "exchange:metrics:shard:3"
    assert telemetry.key("wsfeed", 0) == "exchange:metrics:wsfeed:0"
    with pytest.raises(ValueError, match="'matcher'"):
        telemetry.key("matcher", 0)


def test_published_commands_decode_to_the_same_figures(services: Any) -> None:
    client = redis.Redis.from_url(services.redis_db_url())
    figures = {"commits": 3, "events": 0, "last_commit_us": 12_345_678_901}
    key = telemetry.key("persist", 0)
    try:
        for command in telemetry.publish_commands(key, figures):
            client.execute_command(*command)
        raw = client.hgetall(key)
        ttl = client.ttl(key)
    finally:
        client.close()

    assert telemetry.decode_figures(raw) == figures
    assert 0 < ttl <= telemetry.EXPIRE_S


def test_decoding_drops_fields_that_are_not_integers() -> None:
    assert telemetry.decode_figures({b"a": b"1", "b": "x", b"c": b"-2", b"d": None}) == {"a": 1, "c": -2}
