"""The Prometheus text format of GET /metrics: a strict parser written from the format's description
(prometheus.io, "Exposition formats", text format 0.0.4), the renderer's escaping, and the families.

``parse`` is also what the end-to-end test (``test_metrics_e2e.py``) reads scrapes with. It is
stricter than Prometheus where our output has no reason to be loose: no blank lines, exactly one
space between tokens, HELP and TYPE once per metric and before its samples, every metric's
samples together, no repeated series.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import pytest

from deploy import telemetry
from ingress.probes import ShardProgress, Survey
from ingress.resources.metrics import (
    PERSIST_METRICS,
    PERSIST_ROWS,
    SHARD_METRICS,
    WSFEED_METRICS,
    Family,
    escape_help,
    escape_label_value,
    families,
    render,
)

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}
HELP_ESCAPES = {"\\": "\\", "n": "\n"}
LABEL_ESCAPES = {"\\": "\\", "n": "\n", '"': '"'}


class FormatError(ValueError):
    pass


@dataclass
class Scrape:
    helps: dict[str, str]
    types: dict[str, str]
    samples: list[tuple[str, dict[str, str], float]]

    def values(self, name: str, **labels: str) -> dict[tuple[tuple[str, str], ...], float]:
        """Samples of ``name`` whose labels include ``labels``: sorted label items -> value."""
        return {
            tuple(sorted(lbl.items())): v
            for n, lbl, v in self.samples
            if n == name and all(lbl.get(k) == want for k, want in labels.items())
        }

    def value(self, name: str, **labels: str) -> float:
        found = self.values(name, **labels)
        if len(found) != 1:
            raise KeyError(f"{len(found)} samples of {name} with {labels}")
        return next(iter(found.values()))


def _unescape(text: str, escapes: dict[str, str], where: str) -> str:
    out = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            if i + 1 >= len(text) or text[i + 1] not in escapes:
                raise FormatError(f"bad escape in {where}: {text!r}")
            out.append(escapes[text[i + 1]])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _labels(text: str, line: str) -> tuple[dict[str, str], str]:
    """Parse ``{a="x",b="y"}`` at the start of ``text``; the labels and what follows the ``}``."""
    labels: dict[str, str] = {}
    i = 1
    while True:
        if text[i : i + 1] == "}":
            return labels, text[i + 1 :]
        m = LABEL_NAME.match(text, i)
        if not m:
            raise FormatError(f"bad label name in {line!r}")
        name = m.group()
        if name in labels:
            raise FormatError(f"label {name} twice in {line!r}")
        i = m.end()
        if text[i : i + 2] != '="':
            raise FormatError(f'expected =" after label {name} in {line!r}')
        i += 2
        start = i
        while i < len(text) and text[i] != '"':
            i += 2 if text[i] == "\\" else 1
        if i >= len(text):
            raise FormatError(f"unterminated label value in {line!r}")
        labels[name] = _unescape(text[start:i], LABEL_ESCAPES, line)
        i += 1
        if text[i : i + 1] == ",":
            i += 1
        elif text[i : i + 1] != "}":
            raise FormatError(f"expected , or }} after a label value in {line!r}")


def _value(text: str, line: str) -> float:
    if text in ("NaN", "+Inf", "-Inf"):
        return {"NaN": math.nan, "+Inf": math.inf, "-Inf": -math.inf}[text]
    if not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", text):
        raise FormatError(f"bad value {text!r} in {line!r}")
    return float(text)


def parse(text: str) -> Scrape:
    """Every line of a scrape, strictly; raises FormatError naming the first bad line."""
    if not text.endswith("\n"):
        raise FormatError("the last line must end with a line feed")
    helps: dict[str, str] = {}
    types: dict[str, str] = {}
    samples: list[tuple[str, dict[str, str], float]] = []
    done: set[str] = set()  # metrics whose sample group has ended
    current: str | None = None
    series: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for line in text[:-1].split("\n"):
        if not line:
            raise FormatError("blank line")
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) < 3 or parts[0] != "#" or parts[1] not in ("HELP", "TYPE"):
                raise FormatError(f"not a HELP or TYPE line: {line!r}")
            name = parts[2]
            if not METRIC_NAME.fullmatch(name):
                raise FormatError(f"bad metric name in {line!r}")
            if name in done or name == current:
                raise FormatError(f"{parts[1]} of {name} after its samples: {line!r}")
            if parts[1] == "HELP":
                if name in helps:
                    raise FormatError(f"second HELP of {name}")
                helps[name] = _unescape(parts[3] if len(parts) == 4 else "", HELP_ESCAPES, line)
            else:
                if name in types:
                    raise FormatError(f"second TYPE of {name}")
                if len(parts) != 4 or parts[3] not in TYPES:
                    raise FormatError(f"bad TYPE line {line!r}")
                types[name] = parts[3]
            continue
        m = METRIC_NAME.match(line)
        if not m:
            raise FormatError(f"bad metric name in {line!r}")
        name, rest = m.group(), line[m.end() :]
        labels: dict[str, str] = {}
        if rest.startswith("{"):
            labels, rest = _labels(rest, line)
        if not rest.startswith(" "):
            raise FormatError(f"expected one space before the value in {line!r}")
        tokens = rest[1:].split(" ")
        if len(tokens) not in (1, 2) or (len(tokens) == 2 and not re.fullmatch(r"-?\d+", tokens[1])):
            raise FormatError(f"expected a value and an optional integer timestamp in {line!r}")
        value = _value(tokens[0], line)
        if name != current:
            if name in done:
                raise FormatError(f"samples of {name} are not together")
            if current is not None:
                done.add(current)
            current = name
        key = (name, tuple(sorted(labels.items())))
        if key in series:
            raise FormatError(f"series repeated: {line!r}")
        series.add(key)
        samples.append((name, labels, value))
    return Scrape(helps, types, samples)


# --- the parser is strict ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "a 1",  # no final line feed
        "a 1\n\nb 2\n",  # blank line
        'a{x="1" 1\n',  # unterminated labels
        'a{x="\\t"} 1\n',  # unknown escape
        'a{x="1",x="2"} 1\n',  # label twice
        "a one\n",  # not a number
        "a 1\nb 1\na 2\n",  # samples apart
        'a{x="1"} 1\na{x="1"} 2\n',  # series twice
        "a 1\n# TYPE a counter\n",  # TYPE after samples
        "# TYPE a counter\n# TYPE a counter\na 1\n",  # TYPE twice
        "# TYPE a number\na 1\n",  # unknown type
        "# HELP a x\\q\na 1\n",  # bad escape in HELP
        "# comment\n",  # neither HELP nor TYPE
        "1a 1\n",  # bad name
    ],
)
def test_parser_rejects_what_the_format_forbids(text: str) -> None:
    with pytest.raises(FormatError):
        parse(text)


def test_parser_reads_labels_escapes_and_timestamps() -> None:
    text = '# HELP a line\\nnext \\\\\n# TYPE a gauge\na{x="q\\"b\\\\n\\n",y=""} 1.5 1700000000000\na 2\n'

    scrape = parse(text)

    assert scrape.helps == {"a": "line\nnext \\"}
    assert scrape.types == {"a": "gauge"}
    assert scrape.samples == [("a", {"x": 'q"b\\n\n', "y": ""}, 1.5), ("a", {}, 2.0)]


# --- the renderer -------------------------------------------------------------------------------


def test_label_values_and_help_are_escaped() -> None:
    fam = Family("exchange_test_total", "counter", 'help with \\ and\nnewline and "quotes"')
    fam.add(3, path='C:\\dir\\"x"\nend')

    text = render([fam])

    assert escape_label_value('a\\b"c\nd') == 'a\\\\b\\"c\\nd'
    assert escape_help('a\\b\nc"') == 'a\\\\b\\nc"'
    assert text == (
        '# HELP exchange_test_total help with \\\\ and\\nnewline and "quotes"\n'
        "# TYPE exchange_test_total counter\n"
        'exchange_test_total{path="C:\\\\dir\\\\\\"x\\"\\nend"} 3\n'
    )
    assert parse(text).samples == [("exchange_test_total", {"path": 'C:\\dir\\"x"\nend'}, 3.0)]


@pytest.mark.parametrize(
    ("name", "kind", "label"),
    [("bad-name", "gauge", "x"), ("requests", "counter", "x"), ("ok", "histogram", "x"), ("ok", "gauge", "1x")],
)
def test_renderer_refuses_names_and_kinds_outside_the_format(name: str, kind: str, label: str) -> None:
    fam = Family(name, kind, "help")
    fam.add(1, **{label: "v"})
    with pytest.raises(ValueError):
        render([fam])


def test_families_leave_out_what_a_failed_source_did_not_give() -> None:
    survey = Survey(
        shards_up=(True, False),
        redis_up=False,
        postgres_up=True,
        progress=(ShardProgress(0, None, 7, None), ShardProgress(1, None, 0, None)),
    )
    workers = {1: {"sent": 5, "answered": 4, "pending": 1, "http:404": 2}}

    scrape = parse(render(families(survey, workers, worker_count=2, others_known=False, own=1)))

    assert scrape.value("exchange_up", component="shard", shard="0") == 1
    assert scrape.value("exchange_up", component="shard", shard="1") == 0
    assert scrape.value("exchange_up", component="redis") == 0
    assert scrape.value("exchange_up", component="postgres") == 1
    assert scrape.values("exchange_up", component="ingress") == {(("component", "ingress"), ("worker", "1")): 1}
    assert scrape.values("exchange_journaled_seq") == {}
    assert scrape.values("exchange_persist_lag_events") == {}
    assert scrape.value("exchange_persisted_seq", shard="0") == 7
    assert scrape.value("exchange_ingress_engine_requests_sent_total", worker="1") == 5
    assert scrape.value("exchange_ingress_engine_pending", worker="1") == 1
    assert scrape.value("exchange_ingress_http_error_answers_total", worker="1", code="404") == 2
    assert "exchange_ingress_engine_busy_total" not in scrape.types  # no worker reported it


def test_families_mark_a_worker_whose_figures_expired_as_down() -> None:
    survey = Survey((True,), True, True, (ShardProgress(0, 10, 4, 6),))

    scrape = parse(render(families(survey, {0: {"sent": 1}}, worker_count=2, others_known=True, own=0)))

    assert scrape.value("exchange_up", component="ingress", worker="0") == 1
    assert scrape.value("exchange_up", component="ingress", worker="1") == 0
    assert scrape.value("exchange_persist_lag_events", shard="0") == 6
    assert scrape.types["exchange_ingress_engine_requests_sent_total"] == "counter"
    assert all(name.endswith("_total") for name, kind in scrape.types.items() if kind == "counter")


def test_every_published_field_of_the_other_processes_is_rendered() -> None:
    survey = Survey((True,), True, True, (ShardProgress(0, 10, 4, 6),))
    processes = {
        "shard": {0: {name: 1 for name in telemetry.SHARD_FIELDS}},
        "persist": {0: {name: 1 for name in telemetry.PERSIST_FIELDS}},
        "wsfeed": {1: {name: 1 for name in telemetry.WSFEED_FIELDS}},
    }
    counts = {"shard": 1, "persist": 1, "wsfeed": 2}

    fams = families(survey, {0: {}}, worker_count=1, others_known=True, own=0, processes=processes,
                    process_counts=counts, processes_known=True)  # fmt: skip
    scrape = parse(render(fams))

    rendered = {fam.name for fam in fams if fam.samples}
    shard_names = {name for _, name, _, _ in SHARD_METRICS}
    assert {f for f, _, _, _ in SHARD_METRICS} == set(telemetry.SHARD_FIELDS)
    assert {f for f, _, _, _ in PERSIST_METRICS} | {f for f, _ in PERSIST_ROWS} == set(telemetry.PERSIST_FIELDS)
    assert {f for f, _, _, _ in WSFEED_METRICS} == set(telemetry.WSFEED_FIELDS)
    assert shard_names <= rendered
    assert scrape.value("exchange_up", component="persist", process="0") == 1
    assert scrape.value("exchange_up", component="wsfeed", process="0") == 0
    assert scrape.value("exchange_up", component="wsfeed", process="1") == 1
    assert scrape.value("exchange_wsfeed_connections", process="1") == 1
    assert scrape.value("exchange_persist_rows_total", process="0", table="trades") == 1
    assert all(name.endswith("_total") for name, kind in scrape.types.items() if kind == "counter")


def test_processes_unknown_when_redis_did_not_answer_are_left_out_not_down() -> None:
    survey = Survey((True,), False, True, (ShardProgress(0, None, 4, None),))

    counts = {"shard": 1, "persist": 1, "wsfeed": 1}

    fams = families(survey, {0: {}}, worker_count=1, others_known=True, own=0, processes={}, process_counts=counts,
                    processes_known=False)  # fmt: skip
    scrape = parse(render(fams))

    assert scrape.values("exchange_up", component="persist") == {}
    assert scrape.values("exchange_up", component="wsfeed") == {}
