"""deploy.config: defaults, the example file, environment overrides, and errors naming the key."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import pytest

from deploy.config import ConfigError, build_config, default_symbol_table, load_config
from shards.engine import CORES as ENGINE_CORES
from shards.protocol import SymbolSpec
from shards.routing import shard_for

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "exchange.example.toml"


def _error(raw: dict, env: dict | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        build_config(raw, env or {})
    return info.value


def test_defaults_without_a_file():
    config = load_config(None, env={})

    assert [s.symbol for s in config.symbols] == ["AAPL", "MSFT", "GOOG", "AMZN", "TSLA", "NVDA", "META"]
    assert [s.symbol_id for s in config.symbols] == [1, 2, 3, 4, 5, 6, 7]
    assert config.engine.shards == min(2, os.cpu_count() or 1)
    assert config.rest.workers == min(2, os.cpu_count() or 1)
    assert (config.rest.host, config.rest.port, config.wsfeed.port) == ("127.0.0.1", 3000, 4000)
    assert config.engine.wait_strategy == "block"
    assert config.redis.appendfsync == "everysec" and config.redis.unix_socket is True
    assert config.redis.url == "" and config.postgres.url == "" and config.admin_token == ""
    assert config.data_dir == Path("var").absolute()


def test_nice_lowers_the_writers_by_default_and_takes_each_role(tmp_path):
    path = tmp_path / "exchange.toml"
    path.write_text("[nice]\npersist = 0\nwsfeed = 3\n")

    assert load_config(None, env={}).nice == {"persist": 5, "postgres": 5}
    assert load_config(path, env={}).nice == {"persist": 0, "postgres": 5, "wsfeed": 3}


def test_nice_idle_puts_a_role_in_the_idle_group_with_nice_19_to_fall_back_on(tmp_path):
    path = tmp_path / "exchange.toml"
    path.write_text('[nice]\npersist = "idle"\npostgres = "idle"\nwsfeed = 2\n')

    config = load_config(path, env={})

    assert config.idle == {"persist", "postgres"}
    assert config.nice == {"persist": 19, "postgres": 19, "wsfeed": 2}
    assert load_config(None, env={}).idle == frozenset()


@pytest.mark.parametrize("value", ['"lowest"', '"IDLE"', "20", "true"])
def test_nice_takes_no_other_word_or_number(tmp_path, value):
    path = tmp_path / "exchange.toml"
    path.write_text(f"[nice]\npersist = {value}\n")

    with pytest.raises(ConfigError, match=r'nice\.persist.*from 0 to 19 or "idle"'):
        load_config(path, env={})


def test_engine_core_auto_picks_the_built_core_and_python_can_be_chosen(tmp_path):
    path = tmp_path / "exchange.toml"
    path.write_text('[engine]\ncore = "python"\n')

    assert load_config(path, env={}).engine.core == "python"
    assert load_config(None, env={}).engine.core == ENGINE_CORES[0]  # "c" wherever the install compiled it


def test_hybrid_wait_strategy_takes_its_spin_time(tmp_path):
    path = tmp_path / "exchange.toml"
    path.write_text('[engine]\nwait_strategy = "hybrid"\nspin_us = 20\n')

    config = load_config(path, env={})

    assert (config.engine.wait_strategy, config.engine.spin_us) == ("hybrid", 20)


def test_redis_unix_socket_can_be_switched_off(tmp_path):
    path = tmp_path / "exchange.toml"
    path.write_text("[redis]\nunix_socket = false\n")

    config = load_config(path, env={})

    assert config.redis.unix_socket is False
    assert "unix_socket=False" in repr(config.redis)


def test_example_file_is_valid_and_shows_the_defaults():
    assert load_config(EXAMPLE, env={}) == load_config(None, env={})


def test_symbol_spec_is_in_ticks_and_lots():
    config = load_config(None, env={})

    assert config.symbol("aapl").spec() == SymbolSpec(
        symbol_id=1, symbol="AAPL", min_price=1, max_price=100_000_000, min_qty=1, max_qty=1_000_000
    )
    assert config.symbol("NOPE") is None


def test_shard_of_uses_routing_and_pins():
    raw = {
        "engine": {"shards": 4},
        "symbols": [default_symbol_table("AAPL"), {**default_symbol_table("MSFT"), "shard": 3}],
    }
    config = build_config(raw, {})

    assert config.shard_of("AAPL") == shard_for("AAPL", 4)
    assert config.shard_of("msft") == 3
    every = [s.symbol for i in range(4) for s in config.symbols_of_shard(i)]
    assert sorted(every) == ["AAPL", "MSFT"]
    assert [s.symbol for s in config.symbols_of_shard(3)] == (
        ["AAPL", "MSFT"] if shard_for("AAPL", 4) == 3 else ["MSFT"]
    )


def test_environment_overrides():
    env = {
        "DATABASE_URL": "postgresql://u:pw@db:5432/x",
        "REDIS_URL": "redis://:pw@cache:6379/0",
        "EXCHANGE_ADMIN_TOKEN": "tok",
        "EXCHANGE_DATA_DIR": "/srv/ex",
    }
    config = build_config({"postgres": {"url": "postgresql://other/db"}, "admin_token": "file"}, env)

    assert config.postgres.url == env["DATABASE_URL"]
    assert config.redis.url == env["REDIS_URL"]
    assert config.admin_token == "tok"
    assert config.data_dir == Path("/srv/ex")


def test_secrets_are_hidden_in_repr():
    env = {"DATABASE_URL": "postgresql://u:dbsecret@db/x", "REDIS_URL": "redis://:redissecret@cache/0"}
    config = build_config({"admin_token": "tokensecret"}, env)
    unix = build_config({}, {"REDIS_URL": "unix://:unixsecret@/var/x/redis.sock?db=0"})

    text = repr(config)
    assert "dbsecret" not in text and "redissecret" not in text and "tokensecret" not in text
    assert "unixsecret" not in repr(unix) and "unix://:***@/var/x/redis.sock?db=0" in repr(unix)
    assert "postgresql://u:***@db/x" in text


@pytest.mark.parametrize(
    ("raw", "key", "fragment"),
    [
        ({"rest": {"prot": 1}}, "rest.prot", "unknown key rest.prot"),
        ({"colour": "red"}, "colour", "unknown key colour"),
        ({"symbols": [{**default_symbol_table("AAPL"), "lot": "1"}]}, "symbols[0].lot", "unknown key"),
        ({"engine": {"shards": 0}}, "engine.shards", "must be a positive integer, got 0"),
        ({"engine": {"shards": "2"}}, "engine.shards", "must be an integer"),
        ({"engine": {"shards": True}}, "engine.shards", "must be an integer"),
        ({"engine": {"ring_bytes": 5000}}, "engine.ring_bytes", "power of two, got 5000"),
        ({"engine": {"wait_strategy": "nap"}}, "engine.wait_strategy", "'nap'"),
        ({"engine": {"spin_us": -1}}, "engine.spin_us", "-1"),
        ({"engine": {"core": "rust"}}, "engine.core", "'rust'"),
        ({"nice": {"redis": 5}}, "nice.redis", "persist"),
        ({"nice": {"persist": 20}}, "nice.persist", "20"),
        ({"nice": {"wsfeed": -1}}, "nice.wsfeed", "-1"),
        ({"rest": {"port": 70000}}, "rest.port", "between 0 and 65535, got 70000"),
        ({"rest": {"host": "example.com"}}, "rest.host", "'example.com'"),
        ({"redis": {"appendfsync": "sometimes"}}, "redis.appendfsync", "always, everysec, no"),
        ({"redis": {"url": "http://x"}}, "redis.url", "redis://"),
        ({"redis": {"unix_socket": "no"}}, "redis.unix_socket", "true or false, got 'no'"),
        ({"redis": {"socket": True}}, "redis.socket", "unknown key redis.socket"),
        ({"accounts": {"enabled": "yes"}}, "accounts.enabled", "true or false"),
        ({"affinity": {"shard.0": []}}, "affinity.shard.0", "non-empty list"),
        ({"affinity": {"shard.9": [0]}}, "affinity.shard.9", "there is no shard 9"),
        ({"affinity": {"matcher.0": [0]}}, "affinity.matcher.0", "role.index"),
        ({"symbols": []}, "symbols", "non-empty"),
    ],
)
def test_bad_values_name_the_key(raw, key, fragment):
    error = _error(raw)

    assert error.key == key
    assert str(error).startswith(key + ": ")
    assert fragment in str(error)


@pytest.mark.parametrize(
    ("change", "key", "fragment"),
    [
        (
            {"tick_size": "0.03", "min_price": "0.01"},
            "symbols[1].min_price",
            "0.01 is not a multiple of tick_size 0.03",
        ),
        ({"max_qty": "10.5"}, "symbols[1].max_qty", "not a multiple of step_size 1"),
        ({"tick_size": 0.01}, "symbols[1].tick_size", "strings"),
        ({"tick_size": "abc"}, "symbols[1].tick_size", "not a decimal"),
        ({"tick_size": "-1"}, "symbols[1].tick_size", "positive"),
        ({"min_qty": "10", "max_qty": "5"}, "symbols[1].min_qty", "above max_qty"),
        ({"symbol": "aapl"}, "symbols[1].symbol", "upper-case"),
        ({"symbol": "AAPL"}, "symbols[1].symbol", "listed twice"),
        ({"shard": 2}, "symbols[1].shard", "between 0 and 1, got 2"),
        (
            {"tick_size": "0.00000001", "max_price": "100000000000", "max_qty": "100000000000"},
            "symbols[1].max_qty",
            "64-bit",
        ),
    ],
)
def test_bad_symbols_name_the_key(change, key, fragment):
    raw = {
        "engine": {"shards": 2},
        "symbols": [default_symbol_table("AAPL"), {**default_symbol_table("MSFT"), **change}],
    }

    error = _error(raw)

    assert error.key == key
    assert fragment in str(error)


def test_decimal_fields_are_exact():
    raw = {
        "symbols": [{**default_symbol_table("BRK"), "tick_size": "0.05", "min_price": "0.05", "max_price": "100.10"}]
    }

    sym = build_config(raw, {}).symbols[0]

    assert sym.tick_size == Decimal("0.05") and sym.spec().max_price == 2002


def test_missing_file_and_bad_toml(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[rest\nport = 1\n")

    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "none.toml", env={})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad, env={})


def test_relative_data_dir_resolves_against_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    assert build_config({"data_dir": "state"}, {}).data_dir == tmp_path / "state"
