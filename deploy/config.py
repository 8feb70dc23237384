"""The exchange's configuration: one TOML file, environment overrides, validated once.

``load_config(path)`` reads the file (or nothing: built-in defaults), applies the
environment overrides (``DATABASE_URL``, ``REDIS_URL``, ``EXCHANGE_ADMIN_TOKEN``,
and ``EXCHANGE_DATA_DIR``, which the launcher sets for ``--data-dir``) and returns
frozen, keyword-only objects. Unknown keys and bad values raise ``ConfigError``
naming the key (``engine.shards: must be a positive integer, got 0``); secrets
never appear in a repr.

This module owns the shape and the validation. It must never open a socket,
start a process or touch a database: every process loads it at start.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from deploy.topology import ROLES
from ringbuf.doorbell import STRATEGIES as WAIT_STRATEGIES
from shards.engine import CORES as BUILT_ENGINE_CORES
from shards.protocol import SymbolSpec
from shards.routing import shard_for

APPENDFSYNC = ("always", "everysec", "no")
INT64_MAX = 2**63 - 1
_SYMBOL_RE = re.compile(r"^[A-Z0-9][A-Z0-9._-]{0,19}$")
_ASSET_RE = re.compile(r"^[A-Z0-9]{1,20}$")


class ConfigError(Exception):
    """A bad configuration: ``key`` names the offending key, ``str()`` says what was wrong."""

    code = "config"

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key
        self.message = message


def _mask_url(url: str) -> str:
    """``scheme://user:secret@host`` -> ``scheme://user:***@host``."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


@dataclass(frozen=True, kw_only=True)
class RestConfig:
    host: str = "127.0.0.1"
    port: int = 3000
    workers: int = 2
    max_body_bytes: int = 65536
    answer_timeout_ms: int = 2000
    recv_window_max_ms: int = 60000


@dataclass(frozen=True, kw_only=True)
class WsFeedConfig:
    host: str = "127.0.0.1"
    port: int = 4000
    processes: int = 1
    read_interval_ms: int = 2  # under load, read the streams at most this often (0: read as soon as entries come)


@dataclass(frozen=True, kw_only=True)
class PersistConfig:
    # under load, commit to PostgreSQL at most this often (0: a commit per read); idle, a commit follows each read
    commit_interval_ms: int = 50


@dataclass(frozen=True, kw_only=True)
class EngineConfig:
    shards: int = 2
    wait_strategy: str = "block"
    spin_us: int = 50  # hybrid: how long a shard spins on its rings before it sleeps on the doorbell
    core: str = "c"  # matching engine core: c | python (the file's "auto" picks c where the install built it)
    ring_bytes: int = 4194304
    batch_max: int = 512
    flush_us: int = 200
    snapshot_interval_s: int = 60


@dataclass(frozen=True, kw_only=True)
class AccountsConfig:
    enabled: bool = False
    risk_shards: int = 1


@dataclass(frozen=True, kw_only=True)
class RedisConfig:
    url: str = field(default="", repr=False)  # "" = embedded Redis in data_dir/redis
    appendfsync: str = "everysec"
    unix_socket: bool = True  # embedded Redis: clients use its unix socket (data_dir/redis/redis.sock), else TCP

    def __repr__(self) -> str:
        return (
            f"RedisConfig(url={_mask_url(self.url)!r}, appendfsync={self.appendfsync!r}, "
            f"unix_socket={self.unix_socket!r})"
        )


@dataclass(frozen=True, kw_only=True)
class PostgresConfig:
    url: str = field(default="", repr=False)  # "" = embedded PostgreSQL in data_dir/postgres

    def __repr__(self) -> str:
        return f"PostgresConfig(url={_mask_url(self.url)!r})"


@dataclass(frozen=True, kw_only=True)
class SymbolConfig:
    symbol: str
    symbol_id: int  # 1-based position in the config
    base_asset: str
    quote_asset: str
    tick_size: Decimal
    step_size: Decimal
    min_price: Decimal
    max_price: Decimal
    min_qty: Decimal
    max_qty: Decimal
    shard: int | None = None

    def spec(self) -> SymbolSpec:
        """Trading rules in engine units: prices in ticks, quantities in lots."""
        return SymbolSpec(
            symbol_id=self.symbol_id,
            symbol=self.symbol,
            min_price=int(self.min_price / self.tick_size),
            max_price=int(self.max_price / self.tick_size),
            min_qty=int(self.min_qty / self.step_size),
            max_qty=int(self.max_qty / self.step_size),
        )


@dataclass(frozen=True, kw_only=True)
class Config:
    data_dir: Path
    admin_token: str = field(repr=False)
    rest: RestConfig
    wsfeed: WsFeedConfig
    engine: EngineConfig
    persist: PersistConfig
    accounts: AccountsConfig
    redis: RedisConfig
    postgres: PostgresConfig
    affinity: Mapping[str, tuple[int, ...]]
    nice: Mapping[str, int]  # role (or "postgres") -> how much to lower its CPU priority, 0-19
    idle: frozenset[str] = frozenset()  # roles (or "postgres") set to "idle": run in the idle cpu cgroup
    symbols: tuple[SymbolConfig, ...]

    def __repr__(self) -> str:
        token = "***" if self.admin_token else ""
        return (
            f"Config(data_dir={str(self.data_dir)!r}, admin_token={token!r}, rest={self.rest!r}, "
            f"wsfeed={self.wsfeed!r}, engine={self.engine!r}, persist={self.persist!r}, accounts={self.accounts!r}, "
            f"redis={self.redis!r}, postgres={self.postgres!r}, affinity={dict(self.affinity)!r}, "
            f"nice={dict(self.nice)!r}, idle={sorted(self.idle)!r}, "
            f"symbols=<{len(self.symbols)} symbols: {' '.join(s.symbol for s in self.symbols)}>)"
        )

    def symbol(self, name: str) -> SymbolConfig | None:
        """The symbol called ``name`` (case-insensitive), or None."""
        wanted = name.upper()
        for sym in self.symbols:
            if sym.symbol == wanted:
                return sym
        return None

    def pinned(self) -> dict[str, int]:
        """Symbols pinned to a shard in the config."""
        return {s.symbol: s.shard for s in self.symbols if s.shard is not None}

    def shard_of(self, symbol: str) -> int:
        """Index of the matching shard that owns ``symbol``."""
        return shard_for(symbol.upper(), self.engine.shards, self.pinned())

    def symbols_of_shard(self, index: int) -> tuple[SymbolConfig, ...]:
        pinned = self.pinned()
        return tuple(s for s in self.symbols if shard_for(s.symbol, self.engine.shards, pinned) == index)


DEFAULT_SYMBOLS = ("AAPL", "MSFT", "GOOG", "AMZN", "TSLA", "NVDA", "META")


def default_symbol_table(symbol: str) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "base_asset": symbol,
        "quote_asset": "USD",
        "tick_size": "0.01",
        "step_size": "1",
        "min_price": "0.01",
        "max_price": "1000000",
        "min_qty": "1",
        "max_qty": "1000000",
    }


def default_process_count() -> int:
    """A sensible count of shards and of ingress workers for this machine."""
    return min(2, os.cpu_count() or 1)


# --- validation -----------------------------------------------------------------


def _check_keys(table: Mapping[str, Any], allowed: set[str], prefix: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{prefix}{key}", f"unknown key {prefix}{key}")


def _table(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"must be a table, got {value!r}")
    return value


def _int(
    table: Mapping[str, Any], key: str, prefix: str, default: int, *, minimum: int, maximum: int = INT64_MAX
) -> int:
    value = table.get(key, default)
    name = f"{prefix}{key}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(name, f"must be an integer, got {value!r}")
    if value < minimum or value > maximum:
        if minimum == 1 and maximum == INT64_MAX:
            raise ConfigError(name, f"must be a positive integer, got {value}")
        raise ConfigError(name, f"must be between {minimum} and {maximum}, got {value}")
    return value


def _str(table: Mapping[str, Any], key: str, prefix: str, default: str) -> str:
    value = table.get(key, default)
    if not isinstance(value, str):
        raise ConfigError(f"{prefix}{key}", f"must be a string, got {value!r}")
    return value


def _choice(table: Mapping[str, Any], key: str, prefix: str, default: str, choices: tuple[str, ...]) -> str:
    value = _str(table, key, prefix, default)
    if value not in choices:
        raise ConfigError(f"{prefix}{key}", f"must be one of {', '.join(choices)}; got {value!r}")
    return value


def _engine_core(table: Mapping[str, Any]) -> str:
    """engine.core: "auto" resolves to the C core where the install built it, else the Python one."""
    value = _choice(table, "core", "engine.", "auto", ("auto", "c", "python"))
    if value == "auto":
        return BUILT_ENGINE_CORES[0]
    if value not in BUILT_ENGINE_CORES:
        raise ConfigError("engine.core", f"{value!r} is not built in this install (no C compiler at install)")
    return value


def _host(table: Mapping[str, Any], key: str, prefix: str, default: str) -> str:
    value = _str(table, key, prefix, default)
    if value != "localhost":
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ConfigError(f"{prefix}{key}", f"must be an IP address or localhost, got {value!r}") from None
    return value


def _url(table: Mapping[str, Any], key: str, prefix: str, schemes: tuple[str, ...]) -> str:
    value = _str(table, key, prefix, "")
    if value and not value.startswith(schemes):
        raise ConfigError(f"{prefix}{key}", f"must start with {' or '.join(schemes)}, got {_mask_url(value)!r}")
    return value


def _decimal(table: Mapping[str, Any], key: str, prefix: str) -> Decimal:
    name = f"{prefix}{key}"
    if key not in table:
        raise ConfigError(name, "missing")
    value = table[key]
    if isinstance(value, float):
        raise ConfigError(name, f'write decimals as strings ("{value}"), got the float {value!r}')
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ConfigError(name, f"must be a decimal string, got {value!r}")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ConfigError(name, f"is not a decimal number: {value!r}") from None
    if not number.is_finite() or number <= 0:
        raise ConfigError(name, f"must be a positive decimal, got {value!r}")
    return number


def _multiple(value: Decimal, unit: Decimal, name: str, unit_name: str) -> int:
    units = value / unit
    if units != units.to_integral_value():
        raise ConfigError(name, f"{value} is not a multiple of {unit_name} {unit}")
    return int(units)


_SYMBOL_KEYS = {
    "symbol",
    "base_asset",
    "quote_asset",
    "tick_size",
    "step_size",
    "min_price",
    "max_price",
    "min_qty",
    "max_qty",
    "shard",
}


def _symbol(raw: Any, position: int, shards: int) -> SymbolConfig:
    prefix = f"symbols[{position}]."
    if not isinstance(raw, Mapping):
        raise ConfigError(f"symbols[{position}]", f"must be a table, got {raw!r}")
    _check_keys(raw, _SYMBOL_KEYS, prefix)
    symbol = _str(raw, "symbol", prefix, "")
    if not _SYMBOL_RE.match(symbol):
        raise ConfigError(f"{prefix}symbol", f"must be 1 to 20 upper-case letters, digits or ._-, got {symbol!r}")
    assets = {}
    for key in ("base_asset", "quote_asset"):
        asset = _str(raw, key, prefix, "")
        if not _ASSET_RE.match(asset):
            raise ConfigError(f"{prefix}{key}", f"must be 1 to 20 upper-case letters or digits, got {asset!r}")
        assets[key] = asset
    numbers = {key: _decimal(raw, key, prefix) for key in ("tick_size", "step_size")}
    for key in ("min_price", "max_price"):
        numbers[key] = _decimal(raw, key, prefix)
        _multiple(numbers[key], numbers["tick_size"], f"{prefix}{key}", "tick_size")
    for key in ("min_qty", "max_qty"):
        numbers[key] = _decimal(raw, key, prefix)
        _multiple(numbers[key], numbers["step_size"], f"{prefix}{key}", "step_size")
    if numbers["min_price"] > numbers["max_price"]:
        raise ConfigError(f"{prefix}min_price", f"{numbers['min_price']} is above max_price {numbers['max_price']}")
    if numbers["min_qty"] > numbers["max_qty"]:
        raise ConfigError(f"{prefix}min_qty", f"{numbers['min_qty']} is above max_qty {numbers['max_qty']}")
    max_ticks = int(numbers["max_price"] / numbers["tick_size"])
    max_lots = int(numbers["max_qty"] / numbers["step_size"])
    if max_ticks * max_lots > INT64_MAX:
        raise ConfigError(
            f"{prefix}max_qty",
            f"max_price x max_qty = {max_ticks * max_lots} tick-lot units does not fit in a signed 64-bit integer",
        )
    shard = raw.get("shard")
    if shard is not None:
        shard = _int(raw, "shard", prefix, 0, minimum=0, maximum=shards - 1)
    return SymbolConfig(
        symbol=symbol,
        symbol_id=position + 1,
        base_asset=assets["base_asset"],
        quote_asset=assets["quote_asset"],
        shard=shard,
        **numbers,
    )


def _affinity(raw: Mapping[str, Any], counts: Mapping[str, int]) -> dict[str, tuple[int, ...]]:
    result: dict[str, tuple[int, ...]] = {}
    for key, cpus in raw.items():
        name = f"affinity.{key}"
        role, _, index = key.partition(".")
        if role not in ROLES or not index.isdigit():
            raise ConfigError(name, f'must be "role.index" with a role among {", ".join(ROLES)}, got {key!r}')
        if int(index) >= counts[role]:
            raise ConfigError(name, f"there is no {role} {index}: {counts[role]} {role} process(es) configured")
        if not isinstance(cpus, list) or not cpus:
            raise ConfigError(name, f"must be a non-empty list of CPU numbers, got {cpus!r}")
        for cpu in cpus:
            if isinstance(cpu, bool) or not isinstance(cpu, int) or cpu < 0:
                raise ConfigError(name, f"CPU numbers must be non-negative integers, got {cpu!r}")
        result[key] = tuple(cpus)
    return result


NICE_KEYS = (*ROLES, "postgres")  # "postgres": the embedded server and its backends
DEFAULT_NICE = {"persist": 5, "postgres": 5}  # the writers yield the CPU to the order path (README: CPU priority)


IDLE = "idle"  # a [nice] value: the role runs in an idle cpu cgroup (deploy/idlegroup.py), else at nice 19
IDLE_FALLBACK_NICE = 19


def _nice(raw: Mapping[str, Any]) -> tuple[dict[str, int], frozenset[str]]:
    """The nice value of each role and the roles set to ``"idle"`` (whose nice value is the fallback, 19)."""
    result = dict(DEFAULT_NICE)
    idle = set()
    for key, value in raw.items():
        if key not in NICE_KEYS:
            raise ConfigError(f"nice.{key}", f"must be one of {', '.join(NICE_KEYS)}")
        if value == IDLE:
            idle.add(key)
            value = IDLE_FALLBACK_NICE
        elif isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 19:
            raise ConfigError(f"nice.{key}", f'must be an integer from 0 to 19 or "{IDLE}", got {value!r}')
        result[key] = value
    return result, frozenset(idle)


_TOP_KEYS = {
    "data_dir",
    "admin_token",
    "rest",
    "wsfeed",
    "engine",
    "persist",
    "accounts",
    "redis",
    "postgres",
    "affinity",
    "nice",
    "symbols",
}


def build_config(raw: Mapping[str, Any], env: Mapping[str, str] = os.environ) -> Config:
    """Validate a parsed TOML document (``{}`` = defaults) and apply the environment overrides."""
    _check_keys(raw, _TOP_KEYS, "")
    names = ("rest", "wsfeed", "engine", "persist", "accounts", "redis", "postgres")
    sections = {name: _table(raw, name) for name in names}
    _check_keys(sections["rest"], set(RestConfig.__dataclass_fields__), "rest.")
    _check_keys(sections["wsfeed"], set(WsFeedConfig.__dataclass_fields__), "wsfeed.")
    _check_keys(sections["engine"], set(EngineConfig.__dataclass_fields__), "engine.")
    _check_keys(sections["persist"], set(PersistConfig.__dataclass_fields__), "persist.")
    _check_keys(sections["accounts"], set(AccountsConfig.__dataclass_fields__), "accounts.")
    _check_keys(sections["redis"], set(RedisConfig.__dataclass_fields__), "redis.")
    _check_keys(sections["postgres"], {"url"}, "postgres.")

    procs = default_process_count()
    t = sections["rest"]
    rest = RestConfig(
        host=_host(t, "host", "rest.", "127.0.0.1"),
        port=_int(t, "port", "rest.", 3000, minimum=0, maximum=65535),
        workers=_int(t, "workers", "rest.", procs, minimum=1),
        max_body_bytes=_int(t, "max_body_bytes", "rest.", 65536, minimum=1024),
        answer_timeout_ms=_int(t, "answer_timeout_ms", "rest.", 2000, minimum=1),
        recv_window_max_ms=_int(t, "recv_window_max_ms", "rest.", 60000, minimum=1),
    )
    t = sections["wsfeed"]
    wsfeed = WsFeedConfig(
        host=_host(t, "host", "wsfeed.", "127.0.0.1"),
        port=_int(t, "port", "wsfeed.", 4000, minimum=0, maximum=65535),
        processes=_int(t, "processes", "wsfeed.", 1, minimum=1),
        read_interval_ms=_int(t, "read_interval_ms", "wsfeed.", 2, minimum=0, maximum=1000),
    )
    t = sections["engine"]
    engine = EngineConfig(
        shards=_int(t, "shards", "engine.", procs, minimum=1),
        wait_strategy=_choice(t, "wait_strategy", "engine.", "block", WAIT_STRATEGIES),
        spin_us=_int(t, "spin_us", "engine.", 50, minimum=0, maximum=1_000_000),
        ring_bytes=_int(t, "ring_bytes", "engine.", 4194304, minimum=4096, maximum=2**40),
        batch_max=_int(t, "batch_max", "engine.", 512, minimum=1),
        flush_us=_int(t, "flush_us", "engine.", 200, minimum=0),
        snapshot_interval_s=_int(t, "snapshot_interval_s", "engine.", 60, minimum=1),
        core=_engine_core(t),
    )
    if engine.ring_bytes & (engine.ring_bytes - 1):
        raise ConfigError("engine.ring_bytes", f"must be a power of two, got {engine.ring_bytes}")
    persist = PersistConfig(
        commit_interval_ms=_int(sections["persist"], "commit_interval_ms", "persist.", 50, minimum=0, maximum=10_000)
    )
    t = sections["accounts"]
    enabled = t.get("enabled", False)
    if not isinstance(enabled, bool):
        raise ConfigError("accounts.enabled", f"must be true or false, got {enabled!r}")
    accounts = AccountsConfig(enabled=enabled, risk_shards=_int(t, "risk_shards", "accounts.", 1, minimum=1))
    unix_socket = sections["redis"].get("unix_socket", True)
    if not isinstance(unix_socket, bool):
        raise ConfigError("redis.unix_socket", f"must be true or false, got {unix_socket!r}")
    redis = RedisConfig(
        url=env.get("REDIS_URL") or _url(sections["redis"], "url", "redis.", ("redis://", "rediss://", "unix://")),
        appendfsync=_choice(sections["redis"], "appendfsync", "redis.", "everysec", APPENDFSYNC),
        unix_socket=unix_socket,
    )
    postgres = PostgresConfig(
        url=env.get("DATABASE_URL") or _url(sections["postgres"], "url", "postgres.", ("postgresql://", "postgres://"))
    )
    counts = {"ingress": rest.workers, "shard": engine.shards, "persist": 1, "wsfeed": wsfeed.processes}
    affinity = _affinity(_table(raw, "affinity"), counts)
    nice, idle = _nice(_table(raw, "nice"))

    raw_symbols = raw.get("symbols", [default_symbol_table(s) for s in DEFAULT_SYMBOLS])
    if not isinstance(raw_symbols, list) or not raw_symbols:
        raise ConfigError("symbols", f"must be a non-empty array of tables ([[symbols]]), got {raw_symbols!r}")
    symbols = tuple(_symbol(item, i, engine.shards) for i, item in enumerate(raw_symbols))
    seen: set[str] = set()
    for i, sym in enumerate(symbols):
        if sym.symbol in seen:
            raise ConfigError(f"symbols[{i}].symbol", f"{sym.symbol} is listed twice")
        seen.add(sym.symbol)

    data_dir = env.get("EXCHANGE_DATA_DIR") or _str(raw, "data_dir", "", "./var")
    if not data_dir:
        raise ConfigError("data_dir", "must not be empty")
    return Config(
        data_dir=Path(data_dir).expanduser().absolute(),
        admin_token=env.get("EXCHANGE_ADMIN_TOKEN") or _str(raw, "admin_token", "", ""),
        rest=rest,
        wsfeed=wsfeed,
        engine=engine,
        persist=persist,
        accounts=accounts,
        redis=redis,
        postgres=postgres,
        affinity=affinity,
        nice=nice,
        idle=idle,
        symbols=symbols,
    )


def load_config(path: str | Path | None, env: Mapping[str, str] = os.environ) -> Config:
    """The configuration in the TOML file ``path`` (None: built-in defaults), with environment overrides."""
    if path is None:
        return build_config({}, env)
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError("", f"configuration file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"configuration file {str(path)!r} is not valid TOML: {exc}") from None
    return build_config(raw, env)
