"""The metrics module: exact exposition text, validation, removal, threads, the HTTP server.

Output is also read back with a parser written here from the text format's line grammar, so the
tests do not trust the module to understand its own output.
"""

from __future__ import annotations

import dataclasses
import http.client
import logging
import math
import re
import socket
import sys
import threading
from collections.abc import Callable, Iterator

import pytest

from hybridnet.metrics import (
    CONTENT_TYPE,
    DEFAULT_BUCKETS,
    Counter,
    Histogram,
    MetricsServer,
    Registry,
)

# --- an independent reader of the text format (0.0.4) ---------------------------------------

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_VALUE = re.compile(r"[+-]?(?:Inf|NaN|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)")
_TIMESTAMP = re.compile(r"-?\d+")
_TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}
_LABEL_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


class ParseError(Exception):
    pass


@dataclasses.dataclass
class ParsedSample:
    name: str
    labels: dict[str, str]
    value: float


@dataclasses.dataclass
class ParsedFamily:
    name: str
    type: str = "untyped"
    help: str | None = None
    samples: list[ParsedSample] = dataclasses.field(default_factory=list)


def _unescape_help(text: str) -> str:
    out: list[str] = []
    chars = iter(text)
    for char in chars:
        if char != "\\":
            out.append(char)
            continue
        nxt = next(chars, "")
        if nxt == "\\":
            out.append("\\")
        elif nxt == "n":
            out.append("\n")
        else:  # other backslashes are kept literally by the format
            out.append("\\" + nxt)
    return "".join(out)


def _parse_quoted(line: str, pos: int) -> tuple[str, int]:
    """Parse a label value's characters after its opening quote; returns the index past the
    closing quote."""
    value: list[str] = []
    while pos < len(line):
        char = line[pos]
        if char == '"':
            return "".join(value), pos + 1
        if char == "\\":
            escaped = line[pos + 1 : pos + 2]
            if escaped not in _LABEL_ESCAPES:
                raise ParseError(f"bad escape \\{escaped} in label value: {line!r}")
            value.append(_LABEL_ESCAPES[escaped])
            pos += 2
        else:
            value.append(char)
            pos += 1
    raise ParseError(f"unterminated label value: {line!r}")


def _parse_labels(line: str, pos: int) -> tuple[dict[str, str], int]:
    """Parse ``{name="value",...}`` starting at ``line[pos] == "{"``; returns the end index."""
    labels: dict[str, str] = {}
    pos += 1
    while line[pos : pos + 1] != "}":
        match = _LABEL.match(line, pos)
        if match is None:
            raise ParseError(f"bad label name at column {pos}: {line!r}")
        label, pos = match.group(), match.end()
        if line[pos : pos + 2] != '="':
            raise ParseError(f"expected '=\"' after label {label!r}: {line!r}")
        if label in labels:
            raise ParseError(f"label {label!r} given twice: {line!r}")
        labels[label], pos = _parse_quoted(line, pos + 2)
        if line[pos : pos + 1] == ",":
            pos += 1
        elif line[pos : pos + 1] != "}":
            raise ParseError(f"expected ',' or '}}' at column {pos}: {line!r}")
    return labels, pos + 1


class _Reader:
    """Line-by-line state: the families seen, and which one the previous line belonged to."""

    def __init__(self) -> None:
        self.families: dict[str, ParsedFamily] = {}
        self.current: str | None = None
        self.finished: set[str] = set()

    def enter(self, name: str) -> ParsedFamily:
        if name != self.current:
            if name in self.finished:
                raise ParseError(f"lines of {name!r} are not contiguous")
            if self.current is not None:
                self.finished.add(self.current)
            self.current = name
        return self.families.setdefault(name, ParsedFamily(name))

    def comment(self, line: str) -> None:
        tokens = line[1:].lstrip(" \t").split(None, 2)
        if len(tokens) < 2 or tokens[0] not in ("HELP", "TYPE"):
            return  # any other comment is ignored
        if not _NAME.fullmatch(tokens[1]):
            raise ParseError(f"bad metric name in {line!r}")
        family = self.enter(tokens[1])
        if tokens[0] == "HELP":
            if family.help is not None:
                raise ParseError(f"second HELP for {tokens[1]!r}")
            family.help = _unescape_help(tokens[2] if len(tokens) == 3 else "")
            return
        if len(tokens) != 3 or tokens[2] not in _TYPES:
            raise ParseError(f"bad TYPE line {line!r}")
        if family.samples or family.type != "untyped":
            raise ParseError(f"TYPE for {tokens[1]!r} after its samples or twice")
        family.type = tokens[2]

    def sample(self, line: str) -> None:
        match = _NAME.match(line)
        if match is None:
            raise ParseError(f"bad sample line {line!r}")
        name, pos = match.group(), match.end()
        labels: dict[str, str] = {}
        if line[pos : pos + 1] == "{":
            labels, pos = _parse_labels(line, pos)
        rest = line[pos:]
        if not rest[:1].isspace():
            raise ParseError(f"no blank between name/labels and value: {line!r}")
        fields = rest.split()
        if len(fields) not in (1, 2) or not _VALUE.fullmatch(fields[0]):
            raise ParseError(f"bad value in {line!r}")
        if len(fields) == 2 and not _TIMESTAMP.fullmatch(fields[1]):
            raise ParseError(f"bad timestamp in {line!r}")
        family = _family_of(name, self.families)
        self.enter(family.name)
        family.samples.append(ParsedSample(name, labels, float(fields[0])))


def _family_of(sample_name: str, families: dict[str, ParsedFamily]) -> ParsedFamily:
    if sample_name in families and families[sample_name].type != "histogram":
        return families[sample_name]
    for suffix in ("_bucket", "_sum", "_count"):
        base = sample_name.removesuffix(suffix)
        if base != sample_name and base in families and families[base].type == "histogram":
            return families[base]
    raise ParseError(f"sample {sample_name!r} has no preceding TYPE line")


def parse_exposition(text: str) -> dict[str, ParsedFamily]:
    """Read text format 0.0.4, strictly: every sample needs a TYPE line before it, a family's
    lines are contiguous, HELP and TYPE appear once, and histograms are consistent."""
    if text and not text.endswith("\n"):
        raise ParseError("the last line must end with a line feed")
    reader = _Reader()
    for line in text.split("\n")[:-1]:
        stripped = line.strip(" \t")
        if stripped.startswith("#"):
            reader.comment(stripped)
        elif stripped:
            reader.sample(stripped)
    for family in reader.families.values():
        if family.type == "histogram":
            _check_histogram(family)
    return reader.families


def _check_histogram(family: ParsedFamily) -> None:
    series: dict[tuple[tuple[str, str], ...], dict[str, list[tuple[float, float]]]] = {}
    for sample in family.samples:
        key = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
        kind = sample.name[len(family.name) :]
        entry = series.setdefault(key, {"_bucket": [], "_sum": [], "_count": []})
        if kind == "_bucket":
            if "le" not in sample.labels:
                raise ParseError(f"{family.name}: bucket without le")
            entry[kind].append((float(sample.labels["le"]), sample.value))
        else:
            entry[kind].append((math.nan, sample.value))
    for key, entry in series.items():
        buckets = entry["_bucket"]
        bounds = [bound for bound, _ in buckets]
        counts = [count for _, count in buckets]
        if bounds != sorted(bounds) or len(set(bounds)) != len(bounds):
            raise ParseError(f"{family.name}{key}: bucket bounds out of order")
        if counts != sorted(counts):
            raise ParseError(f"{family.name}{key}: buckets are not cumulative")
        if not bounds or bounds[-1] != math.inf:
            raise ParseError(f"{family.name}{key}: no +Inf bucket")
        if len(entry["_sum"]) != 1 or len(entry["_count"]) != 1:
            raise ParseError(f"{family.name}{key}: needs exactly one _sum and one _count")
        if entry["_count"][0][1] != counts[-1]:
            raise ParseError(f"{family.name}{key}: _count differs from the +Inf bucket")


def test_parser_rejects_what_the_grammar_forbids() -> None:
    """The reader must be strict, or the round-trip test below proves nothing."""
    good = '# TYPE a counter\na{x="1"} 1\n'
    assert parse_exposition(good)["a"].samples == [ParsedSample("a", {"x": "1"}, 1.0)]
    bad = [
        '# TYPE a counter\na{x="1} 1\n',  # unterminated value
        '# TYPE a counter\na{x="\\t"} 1\n',  # escape the format does not have
        "# TYPE a counter\na 1",  # no final line feed
        "a 1\n",  # no TYPE
        "# TYPE a counter\na one\n",  # value
        "# TYPE a counter\na 1 2.5\n",  # timestamp
        "# TYPE a counter\n# TYPE b counter\na 1\n",  # a's lines not contiguous
        '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
        '# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 3\n',
    ]
    for text in bad:
        with pytest.raises(ParseError):
            parse_exposition(text)


# --- exact rendering -------------------------------------------------------------------------


def test_counter_renders_exactly() -> None:
    registry = Registry()
    allocations = registry.counter(
        "hybridnet_ipam_allocations_total", "Addresses handed out.", ["network", "subnet"]
    )
    restarts = registry.counter("hybridnet_watch_restarts_total", "Watches restarted.")
    allocations.labels(network="underlay", subnet="s1").inc()
    allocations.labels(network="underlay", subnet="s1").inc(2)
    allocations.labels(network="overlay", subnet="o1").inc(0.5)
    assert restarts.value == 0
    assert registry.render() == (
        "# HELP hybridnet_ipam_allocations_total Addresses handed out.\n"
        "# TYPE hybridnet_ipam_allocations_total counter\n"
        'hybridnet_ipam_allocations_total{network="overlay",subnet="o1"} 0.5\n'
        'hybridnet_ipam_allocations_total{network="underlay",subnet="s1"} 3\n'
        "# HELP hybridnet_watch_restarts_total Watches restarted.\n"
        "# TYPE hybridnet_watch_restarts_total counter\n"
        "hybridnet_watch_restarts_total 0\n"
    )
    assert allocations.labels(network="underlay", subnet="s1").value == 3


def test_families_are_sorted_by_name_whatever_the_registration_order() -> None:
    registry = Registry()
    registry.gauge("zeta", "z")
    registry.counter("alpha_total", "a")
    registry.histogram("mid", "m", buckets=[1])
    names = [line.split()[2] for line in registry.render().splitlines() if line[:6] == "# TYPE"]
    assert names == ["alpha_total", "mid", "zeta"]


def test_gauge_set_inc_dec_and_callback_render_exactly() -> None:
    registry = Registry()
    used: dict[str, set[str]] = {"s1": {"10.0.0.2", "10.0.0.3"}}
    in_use = registry.gauge("hybridnet_subnet_addresses_used", "Addresses in use.", ["subnet"])
    in_use.labels(subnet="s1").set_function(lambda: len(used["s1"]))
    watches = registry.gauge("hybridnet_watches", "Open watch connections.")
    watches.set(5)
    watches.inc()
    watches.dec(2.5)
    expected = (
        "# HELP hybridnet_subnet_addresses_used Addresses in use.\n"
        "# TYPE hybridnet_subnet_addresses_used gauge\n"
        'hybridnet_subnet_addresses_used{subnet="s1"} 2\n'
        "# HELP hybridnet_watches Open watch connections.\n"
        "# TYPE hybridnet_watches gauge\n"
        "hybridnet_watches 3.5\n"
    )
    assert registry.render() == expected
    used["s1"].add("10.0.0.4")  # the callback reads state at scrape time, not at set_function
    assert registry.render() == expected.replace('"s1"} 2', '"s1"} 3')


def test_callback_gauge_cannot_also_be_set() -> None:
    gauge = Registry().gauge("g", "g")
    gauge.set_function(lambda: 1.0)
    with pytest.raises(ValueError, match="set_function"):
        gauge.set(2)
    assert gauge.value == 1


def test_failing_callback_drops_only_its_series(caplog: pytest.LogCaptureFixture) -> None:
    registry = Registry()
    gauge = registry.gauge("g", "g", ["subnet"])
    gauge.labels(subnet="ok").set(1)

    def broken() -> float:
        raise RuntimeError("state gone")

    gauge.labels(subnet="broken").set_function(broken)
    with caplog.at_level(logging.ERROR, logger="hybridnet.metrics"):
        text = registry.render()
    assert text == '# HELP g g\n# TYPE g gauge\ng{subnet="ok"} 1\n'
    assert "gauge callback failed" in caplog.text


def test_histogram_renders_cumulative_buckets_sum_and_count() -> None:
    registry = Registry()
    latency = registry.histogram(
        "hybridnet_cni_add_seconds", "CNI ADD latency.", ["node"], buckets=[0.5, 1, 4]
    )
    child = latency.labels(node="n1")
    for value in (0.25, 0.5, 0.75, 2, 8):  # 0.5 sits on a bound: le is inclusive
        child.observe(value)
    latency.labels(node="n0")  # created, never observed: all zeros
    assert registry.render() == (
        "# HELP hybridnet_cni_add_seconds CNI ADD latency.\n"
        "# TYPE hybridnet_cni_add_seconds histogram\n"
        'hybridnet_cni_add_seconds_bucket{node="n0",le="0.5"} 0\n'
        'hybridnet_cni_add_seconds_bucket{node="n0",le="1"} 0\n'
        'hybridnet_cni_add_seconds_bucket{node="n0",le="4"} 0\n'
        'hybridnet_cni_add_seconds_bucket{node="n0",le="+Inf"} 0\n'
        'hybridnet_cni_add_seconds_sum{node="n0"} 0\n'
        'hybridnet_cni_add_seconds_count{node="n0"} 0\n'
        'hybridnet_cni_add_seconds_bucket{node="n1",le="0.5"} 2\n'
        'hybridnet_cni_add_seconds_bucket{node="n1",le="1"} 3\n'
        'hybridnet_cni_add_seconds_bucket{node="n1",le="4"} 4\n'
        'hybridnet_cni_add_seconds_bucket{node="n1",le="+Inf"} 5\n'
        'hybridnet_cni_add_seconds_sum{node="n1"} 11.5\n'
        'hybridnet_cni_add_seconds_count{node="n1"} 5\n'
    )
    assert (child.count, child.sum) == (5, 11.5)


def test_histogram_default_buckets_span_1ms_to_10s() -> None:
    histogram = Registry().histogram("h_seconds", "h")
    assert histogram.buckets == DEFAULT_BUCKETS
    assert (DEFAULT_BUCKETS[0], DEFAULT_BUCKETS[-1]) == (0.001, 10)
    assert list(DEFAULT_BUCKETS) == sorted(set(DEFAULT_BUCKETS))
    histogram.observe(0.003)
    text = histogram.render()
    assert 'h_seconds_bucket{le="0.0025"} 0\n' in text
    assert 'h_seconds_bucket{le="0.005"} 1\n' in text
    assert 'h_seconds_bucket{le="10"} 1\n' in text


def test_histogram_time_observes_duration_also_on_error(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([100.0, 100.25, 200.0, 200.5])
    monkeypatch.setattr("hybridnet.metrics._time.perf_counter", lambda: next(clock))
    histogram = Registry().histogram("h_seconds", "h", buckets=[0.3, 1])
    with histogram.time():
        pass
    with pytest.raises(RuntimeError), histogram.time():
        raise RuntimeError("call failed")
    assert (histogram.count, histogram.sum) == (2, 0.75)
    assert 'h_seconds_bucket{le="0.3"} 1\n' in histogram.render()


def test_values_are_formatted_like_prometheus() -> None:
    registry = Registry()
    gauge = registry.gauge("g", "g", ["case"])
    for case, value in [
        ("int", 7.0),
        ("neg", -2.0),
        ("frac", 0.1),
        ("tiny", 1e-7),
        ("huge", 1e300),
        ("inf", math.inf),
        ("ninf", -math.inf),
        ("nan", math.nan),
    ]:
        gauge.labels(case=case).set(value)
    lines = dict(line.split(" ") for line in registry.render().splitlines()[2:])
    assert lines == {
        'g{case="frac"}': "0.1",
        'g{case="huge"}': "1e+300",
        'g{case="inf"}': "+Inf",
        'g{case="int"}': "7",
        'g{case="nan"}': "NaN",
        'g{case="neg"}': "-2",
        'g{case="ninf"}': "-Inf",
        'g{case="tiny"}': "1e-07",
    }


# --- escaping and validation -----------------------------------------------------------------


def test_label_values_and_help_are_escaped() -> None:
    registry = Registry()
    counter = registry.counter("c_total", 'Help with \\ backslash, "quotes"\nand a newline.', ["v"])
    counter.labels(v='back\\slash "quoted"\nnext line').inc()
    assert registry.render() == (
        '# HELP c_total Help with \\\\ backslash, "quotes"\\nand a newline.\n'
        "# TYPE c_total counter\n"
        'c_total{v="back\\\\slash \\"quoted\\"\\nnext line"} 1\n'
    )
    parsed = parse_exposition(registry.render())["c_total"]
    assert parsed.help == 'Help with \\ backslash, "quotes"\nand a newline.'
    assert parsed.samples[0].labels == {"v": 'back\\slash "quoted"\nnext line'}


@pytest.mark.parametrize("name", ["", "1abc", "a-b", "a b", "é", "a.b", "a{}"])
def test_invalid_metric_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="invalid metric name"):
        Registry().counter(name, "x")


@pytest.mark.parametrize("label", ["", "1x", "a-b", "a:b", "é"])
def test_invalid_label_names_are_refused(label: str) -> None:
    with pytest.raises(ValueError, match="invalid label name"):
        Registry().gauge("g", "g", [label])


def test_reserved_and_duplicate_label_names_are_refused() -> None:
    registry = Registry()
    with pytest.raises(ValueError, match="reserved"):
        registry.counter("c_total", "c", ["__name__"])
    with pytest.raises(ValueError, match="'le' is reserved"):
        registry.histogram("h", "h", ["le"])
    with pytest.raises(ValueError, match="given twice"):
        registry.gauge("g", "g", ["a", "a"])
    with pytest.raises(ValueError, match="not a str"):
        registry.gauge("g", "g", "subnet")
    registry.gauge("g_le", "a gauge may have an le label", ["le"])


def test_wrong_label_sets_are_refused_with_a_clear_message() -> None:
    counter = Registry().counter("c_total", "c", ["network", "subnet"])
    with pytest.raises(ValueError) as missing:
        counter.labels(network="n")
    assert str(missing.value) == (
        "metric 'c_total' takes labels ['network', 'subnet']; missing ['subnet'], unexpected []"
    )
    with pytest.raises(ValueError, match=r"missing \[\], unexpected \['zone'\]"):
        counter.labels(network="n", subnet="s", zone="z")
    with pytest.raises(ValueError, match="must be a str, got int"):
        counter.labels(network="n", subnet=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"use \.labels"):
        counter.inc()
    with pytest.raises(ValueError, match="takes labels"):
        counter.remove(subnet="s")
    with pytest.raises(ValueError, match="takes labels"):
        Registry().counter("u_total", "u").labels(x="1")


def test_labels_may_be_called_self_or_name() -> None:
    registry = Registry()
    counter = registry.counter("c_total", "c", ["self", "name"])
    counter.labels(self="a", name="b").inc()
    assert registry.remove("c_total", self="a", name="b")


def test_bad_values_and_buckets_are_refused() -> None:
    registry = Registry()
    counter = registry.counter("c_total", "c")
    for amount in (-1.0, math.nan):
        with pytest.raises(ValueError, match="non-negative"):
            counter.inc(amount)
    histogram = registry.histogram("h", "h")
    with pytest.raises(ValueError, match="NaN"):
        histogram.observe(math.nan)
    for buckets in ([], [math.inf], [1, 1], [2, 1], [math.nan, 1]):
        with pytest.raises(ValueError, match="bucket"):
            Histogram("h2", "h", buckets=buckets)
    assert Histogram("h3", "h", buckets=[1, math.inf]).buckets == (1,)


def test_sample_name_collisions_are_refused() -> None:
    registry = Registry()
    registry.histogram("rpc_seconds", "h")
    with pytest.raises(ValueError, match="already used by registered metric 'rpc_seconds'"):
        registry.counter("rpc_seconds_count", "c")
    with pytest.raises(ValueError, match="already used"):
        registry.gauge("rpc_seconds", "g")
    registry.counter("dup_total", "c")
    with pytest.raises(ValueError, match="'dup_total' is already used"):
        registry.gauge("dup_total", "g")
    registry.counter("x_sum", "c")
    with pytest.raises(ValueError, match="'x_sum' is already used"):
        registry.histogram("x", "h")
    registry.unregister("rpc_seconds")
    registry.counter("rpc_seconds_count", "now free")


# --- removal ---------------------------------------------------------------------------------


def test_removed_series_is_no_longer_exported() -> None:
    registry = Registry()
    used = registry.gauge("subnet_used", "u", ["subnet"])
    used.labels(subnet="a").set(1)
    used.labels(subnet="b").set(2)
    assert registry.remove("subnet_used", subnet="a") is True
    assert registry.remove("subnet_used", subnet="a") is False
    assert (
        registry.render()
        == '# HELP subnet_used u\n# TYPE subnet_used gauge\nsubnet_used{subnet="b"} 2\n'
    )
    used.labels(subnet="a").set(5)  # recreated from scratch if it comes back
    assert 'subnet_used{subnet="a"} 5\n' in registry.render()
    histogram = registry.histogram("h", "h", ["subnet"], buckets=[1])
    histogram.labels(subnet="a").observe(1)
    assert histogram.remove(subnet="a")
    assert "h_bucket" not in registry.render()
    used.clear()
    assert "subnet_used{" not in registry.render()


def test_removal_errors() -> None:
    registry = Registry()
    registry.counter("plain_total", "p")
    with pytest.raises(ValueError, match="no labels"):
        registry.remove("plain_total")
    with pytest.raises(KeyError):
        registry.remove("missing_total", subnet="a")


# --- threads ---------------------------------------------------------------------------------


@pytest.fixture
def frequent_thread_switches() -> Iterator[None]:
    """Switch threads every microsecond so that an unlocked read-modify-write would lose
    updates in this test rather than once a month in production."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def _run_in_threads(count: int, work: Callable[[], None]) -> None:
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            work()
        except BaseException as error:
            errors.append(error)
            raise

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors


@pytest.mark.usefixtures("frequent_thread_switches")
def test_concurrent_updates_from_eight_threads_are_exact() -> None:
    registry = Registry()
    plain = registry.counter("plain_total", "p")
    labelled = registry.counter("labelled_total", "l", ["subnet"])
    gauge = registry.gauge("g", "g")
    histogram = registry.histogram("h", "h", buckets=[0.5])
    per_thread = 20_000

    def work() -> None:
        for i in range(per_thread):
            plain.inc()
            labelled.labels(subnet="s").inc(2)  # child created concurrently: must be one
            gauge.inc()
            histogram.observe(0.25 if i % 2 else 1.0)

    _run_in_threads(8, work)
    assert plain.value == 8 * per_thread
    assert labelled.labels(subnet="s").value == 2 * 8 * per_thread
    assert gauge.value == 8 * per_thread
    assert histogram.count == 8 * per_thread
    assert histogram.sum == 8 * per_thread * (0.25 + 1.0) / 2
    text = registry.render()
    assert f'h_bucket{{le="0.5"}} {4 * per_thread}\n' in text
    assert f"plain_total {8 * per_thread}\n" in text


@pytest.mark.usefixtures("frequent_thread_switches")
def test_scrapes_during_updates_are_always_consistent() -> None:
    registry = Registry()
    histogram = registry.histogram("h", "h", ["subnet"], buckets=[0.5, 1])
    done = threading.Event()
    scrapes = 0

    def update() -> None:
        for i in range(5_000):
            histogram.labels(subnet=str(i % 7)).observe(i % 3 * 0.5)
            if i % 11 == 0:
                histogram.remove(subnet=str(i % 7))

    def scrape() -> None:
        nonlocal scrapes
        while not done.is_set():
            parse_exposition(registry.render())  # +Inf == count and cumulative, every time
            scrapes += 1

    scraper = threading.Thread(target=scrape)
    scraper.start()
    try:
        _run_in_threads(4, update)
    finally:
        done.set()
        scraper.join()
    assert scrapes > 0


# --- the reader agrees with the writer -------------------------------------------------------


def test_output_parses_with_an_independent_reader() -> None:
    registry = Registry()
    counter = registry.counter("hybridnet_allocations_total", "Allocations\\by subnet.", ["subnet"])
    counter.labels(subnet='we"ird\\na}me{,\n').inc(3)
    counter.labels(subnet="plain").inc()
    registry.gauge("hybridnet_up", "Whether the component runs.").set(1)
    histogram = registry.histogram("hybridnet_rpc_seconds", "RPC latency.", ["method"])
    for value in (0.0005, 0.001, 0.02, 0.3, 7, 30):
        histogram.labels(method="Add").observe(value)
    histogram.labels(method="Del")
    registry.gauge("hybridnet_empty", "Labelled, no series yet.", ["subnet"])

    families = parse_exposition(registry.render())
    assert list(families) == [
        "hybridnet_allocations_total",
        "hybridnet_empty",
        "hybridnet_rpc_seconds",
        "hybridnet_up",
    ]
    assert {name: family.type for name, family in families.items()} == {
        "hybridnet_allocations_total": "counter",
        "hybridnet_empty": "gauge",
        "hybridnet_rpc_seconds": "histogram",
        "hybridnet_up": "gauge",
    }
    allocations = families["hybridnet_allocations_total"]
    assert allocations.help == "Allocations\\by subnet."
    assert {s.labels["subnet"]: s.value for s in allocations.samples} == {
        'we"ird\\na}me{,\n': 3,
        "plain": 1,
    }
    rpc = families["hybridnet_rpc_seconds"].samples
    add_buckets = {
        s.labels["le"]: s.value
        for s in rpc
        if s.name.endswith("_bucket") and s.labels["method"] == "Add"
    }
    assert add_buckets["0.001"] == 2
    assert add_buckets["10"] == 5
    assert add_buckets["+Inf"] == 6
    assert len(add_buckets) == len(DEFAULT_BUCKETS) + 1
    assert families["hybridnet_up"].samples == [ParsedSample("hybridnet_up", {}, 1)]
    assert families["hybridnet_empty"].samples == []


# --- HTTP ------------------------------------------------------------------------------------


@pytest.fixture
def served() -> Iterator[tuple[Registry, MetricsServer]]:
    registry = Registry()
    registry.counter("requests_total", "r").inc(4)
    server = MetricsServer(registry, "127.0.0.1", 0)
    server.start()
    yield registry, server
    server.stop()


def _get(port: int, path: str, host: str = "127.0.0.1") -> tuple[int, str | None, bytes]:
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        connection.close()


def test_server_serves_metrics_healthz_and_404(
    served: tuple[Registry, MetricsServer],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry, server = served
    assert server.port > 0
    with caplog.at_level(logging.DEBUG, logger="hybridnet.metrics"):
        status, content_type, body = _get(server.port, "/metrics")
        assert (status, content_type) == (200, "text/plain; version=0.0.4; charset=utf-8")
        assert content_type == CONTENT_TYPE
        assert body.decode() == registry.render()
        assert parse_exposition(body.decode())["requests_total"].samples[0].value == 4

        assert _get(server.port, "/metrics?name[]=requests_total")[0] == 200
        assert _get(server.port, "/healthz")[::2] == (200, b"ok")
        for path in ("/", "/metrics/", "/favicon.ico", "/healthz/x"):
            assert _get(server.port, path)[0] == 404
    assert capsys.readouterr().err == ""  # no per-request lines on stderr
    assert any("GET /metrics" in record.getMessage() for record in caplog.records)
    assert all(record.levelno <= logging.INFO for record in caplog.records)


def test_server_reflects_updates_and_stops(served: tuple[Registry, MetricsServer]) -> None:
    registry, server = served
    counter = registry.get("requests_total")
    assert isinstance(counter, Counter)
    counter.inc()
    assert b"requests_total 5\n" in _get(server.port, "/metrics")[2]
    port = server.port
    server.stop()
    server.stop()  # twice is fine
    with pytest.raises(ConnectionRefusedError):
        _get(port, "/healthz")
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.port


def test_server_on_ipv6_loopback() -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    registry = Registry()
    with MetricsServer(registry, "::1", 0) as server:
        assert _get(server.port, "/healthz", host="::1")[::2] == (200, b"ok")


def test_counter_type_is_exported_for_annotations() -> None:
    def record(counter: Counter) -> None:
        counter.inc()

    registry = Registry()
    record(registry.counter("typed_total", "t"))
    assert registry.render().endswith("typed_total 1\n")


def test_parse_address_reads_host_port_flags() -> None:
    from hybridnet.metrics import parse_address  # noqa: PLC0415

    assert parse_address("127.0.0.1:9899") == ("127.0.0.1", 9899)
    assert parse_address(":9899") == ("::", 9899)  # this kernel has IPv6
    assert parse_address("[::1]:80") == ("::1", 80)
    for bad in ("nope", "host:", "host:99999", "a b:1"):
        with pytest.raises(ValueError, match="is not host:port"):
            parse_address(bad)


def test_an_empty_host_serves_ipv6_and_ipv4() -> None:
    """Probes of a host-network pod come from the node's first address family, which may be
    IPv6: ``:port`` must answer on both."""
    from hybridnet.metrics import parse_address  # noqa: PLC0415

    with MetricsServer(Registry(), *parse_address(":0")) as server:
        for host in ("127.0.0.1", "::1"):
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            with socket.create_connection((host, server.port), timeout=5) as conn:
                assert conn.family == family
                conn.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
                assert conn.recv(100).startswith(b"HTTP/1.0 200")
