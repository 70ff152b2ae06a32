"""Prometheus metrics without a dependency: counters, gauges, histograms and a /metrics server.

Every component (manager, daemon, webhook) exposes the same few kinds of figures, and the CNI
plugin must stay light, so this is a small stdlib module rather than prometheus_client. There is
no process-wide default registry: a component builds a :class:`Registry`, passes it to whatever
records figures, and serves it with :class:`MetricsServer`; tests build fresh ones and never see
each other's series.

Output is the text exposition format 0.0.4, rendered in a stable order (families by name, series
by label values) so that it can be compared in tests and diffed by people.
"""

from __future__ import annotations

import abc
import bisect
import contextlib
import http.server
import itertools
import logging
import math
import re
import socket
import threading
import time as _time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import ClassVar, Generic, NamedTuple, TypeVar
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

DEFAULT_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Upper bounds in seconds, 1 ms to 10 s: CNI calls, API round trips and allocations all fall
in this span, and a handful of buckets per decade keeps the series count low."""

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_HISTOGRAM_SUFFIXES = ("", "_bucket", "_sum", "_count")

# Integers up to 2**53 are exact in a float; beyond that ``int()`` would print digits the value
# does not really have, so those use the float's shortest repr like any fraction.
_EXACT_INTEGER_LIMIT = float(2**53)

LabelPairs = tuple[tuple[str, str], ...]


class _Sample(NamedTuple):
    """One exposition line before formatting: name suffix, extra labels (``le``), value."""

    suffix: str
    extra_labels: LabelPairs
    value: float


def format_value(value: float) -> str:
    """A sample value as Prometheus writes it.

    Integral values are written without ``.0`` (``3``, ``le="1"``), everything else as the
    shortest repr that round-trips, and the specials as ``+Inf``, ``-Inf`` and ``NaN``; the rule
    is the same for sample values and bucket bounds, so output is consistent.
    """
    value = float(value)  # ints too: int.is_integer() only exists from Python 3.12
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < _EXACT_INTEGER_LIMIT:
        return str(int(value))
    return repr(value)


def escape_label_value(value: str) -> str:
    """Escape backslash, double quote and line feed, the three characters the format reserves."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    # HELP text is not quoted, so only backslash and line feed are special there.
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _check_metric_name(name: str) -> None:
    if not isinstance(name, str) or not _METRIC_NAME.fullmatch(name):
        raise ValueError(f"invalid metric name {name!r}: must match [a-zA-Z_:][a-zA-Z0-9_:]*")


def _check_label_names(metric: str, labelnames: Iterable[str], reserved: Iterable[str]) -> None:
    seen: set[str] = set()
    forbidden = set(reserved)
    for label in labelnames:
        if not isinstance(label, str) or not _LABEL_NAME.fullmatch(label):
            raise ValueError(
                f"metric {metric!r}: invalid label name {label!r}: "
                "must match [a-zA-Z_][a-zA-Z0-9_]*"
            )
        if label.startswith("__"):
            raise ValueError(
                f"metric {metric!r}: label name {label!r} is reserved (starts with '__')"
            )
        if label in forbidden:
            raise ValueError(f"metric {metric!r}: label name {label!r} is reserved for this type")
        if label in seen:
            raise ValueError(f"metric {metric!r}: label name {label!r} given twice")
        seen.add(label)


class _Series(abc.ABC):
    """One time series (one set of label values) of a family; owns its own lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    @abc.abstractmethod
    def _collect(self) -> list[_Sample]:
        """The series' samples, read consistently; called at scrape time."""


class CounterSeries(_Series):
    """A value that only goes up; a restart resets it, which Prometheus' rate() expects."""

    def __init__(self) -> None:
        super().__init__()
        self._value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (non-negative; a counter that went down would look like a restart)."""
        if not amount >= 0:  # also rejects NaN
            raise ValueError(f"counter increment must be non-negative, got {amount!r}")
        with self._lock:
            self._value += amount

    @property
    def value(self) -> float:
        with self._lock:
            return self._value

    def _collect(self) -> list[_Sample]:
        return [_Sample("", (), self.value)]


class GaugeSeries(_Series):
    """A value that goes up and down, held here or computed by a callback at scrape time."""

    def __init__(self) -> None:
        super().__init__()
        self._value = 0.0
        self._function: Callable[[], float] | None = None

    def set(self, value: float) -> None:
        with self._lock:
            self._check_no_function()
            self._value = float(value)

    def inc(self, amount: float = 1.0) -> None:
        with self._lock:
            self._check_no_function()
            self._value += amount

    def dec(self, amount: float = 1.0) -> None:
        with self._lock:
            self._check_no_function()
            self._value -= amount

    def set_function(self, function: Callable[[], float]) -> None:
        """Compute the value at scrape time, for figures that live in other state (addresses
        used in a subnet) and would otherwise have to be copied on every change.

        The function runs on the server's thread without any metrics lock held, so it may take
        the locks of the state it reads. If it raises, the series is left out of that scrape
        and the error logged, rather than failing the whole scrape.
        """
        with self._lock:
            self._function = function

    @property
    def value(self) -> float:
        """The current value; for a callback gauge this calls the function."""
        with self._lock:
            function, value = self._function, self._value
        return value if function is None else float(function())

    def _check_no_function(self) -> None:
        if self._function is not None:
            raise ValueError("gauge value comes from set_function(); it cannot also be set")

    def _collect(self) -> list[_Sample]:
        with self._lock:
            function, value = self._function, self._value
        if function is not None:
            try:
                value = float(function())
            except Exception:
                log.exception("gauge callback failed; series left out of this scrape")
                return []
        return [_Sample("", (), value)]


class HistogramSeries(_Series):
    """Observations counted into fixed buckets, with their sum and count."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        super().__init__()
        self._bounds = bounds
        # Per-bucket (non-cumulative) counts; the last slot is the implicit +Inf bucket.
        # Cumulated at scrape time so that observe() touches one slot.
        self._counts = [0] * (len(bounds) + 1)
        self._sum = 0.0

    def observe(self, value: float) -> None:
        """Record one observation (in seconds for latencies)."""
        if math.isnan(value):
            raise ValueError("cannot observe NaN")
        index = bisect.bisect_left(self._bounds, value)  # le is inclusive: value == bound fits
        with self._lock:
            self._counts[index] += 1
            self._sum += value

    @contextlib.contextmanager
    def time(self) -> Iterator[None]:
        """Observe the block's duration in seconds, also when it raises: failed calls took time
        too, and leaving them out would make the latency look better than it is."""
        start = _time.perf_counter()
        try:
            yield
        finally:
            self.observe(_time.perf_counter() - start)

    @property
    def count(self) -> int:
        with self._lock:
            return sum(self._counts)

    @property
    def sum(self) -> float:
        with self._lock:
            return self._sum

    def _collect(self) -> list[_Sample]:
        with self._lock:
            counts = list(self._counts)
            total = self._sum
        samples: list[_Sample] = []
        cumulative = 0
        for bound, count in zip((*self._bounds, math.inf), counts, strict=True):
            cumulative += count
            samples.append(_Sample("_bucket", (("le", format_value(bound)),), cumulative))
        samples.append(_Sample("_sum", (), total))
        samples.append(_Sample("_count", (), cumulative))
        return samples


_S = TypeVar("_S", bound=_Series)


class _Family(abc.ABC, Generic[_S]):
    """A named metric with fixed label names, holding one series per set of label values.

    An unlabelled family has exactly one series, created at once so that it is exported as 0
    before anything happens (a missing series and a zero are different things to alerts); its
    methods act on that series. A labelled family exports a series from its first
    ``labels()`` call until ``remove()``.
    """

    type_name: ClassVar[str]
    _reserved_labels: ClassVar[tuple[str, ...]] = ()
    _suffixes: ClassVar[tuple[str, ...]] = ("",)

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> None:
        _check_metric_name(name)
        if isinstance(labelnames, str):  # ("subnet") instead of ("subnet",)
            raise ValueError(f"metric {name!r}: labelnames must be a sequence of names, not a str")
        _check_label_names(name, labelnames, self._reserved_labels)
        self.name = name
        self.documentation = documentation
        self.labelnames: tuple[str, ...] = tuple(labelnames)
        self._lock = threading.Lock()
        self._children: dict[tuple[str, ...], _S] = {}
        if not self.labelnames:
            self._children[()] = self._new_series()

    @abc.abstractmethod
    def _new_series(self) -> _S: ...

    def claimed_names(self) -> tuple[str, ...]:
        """The family name and every sample name it writes, so a registry can refuse two
        families that would write the same lines."""
        return tuple(self.name + suffix for suffix in self._suffixes)

    def labels(self, /, **values: str) -> _S:
        """The series for these label values, created on first use.

        Positional-only ``self`` lets a label be called anything, ``self`` included.
        """
        key = self._key(values)
        with self._lock:
            series = self._children.get(key)
            if series is None:
                series = self._children[key] = self._new_series()
            return series

    def remove(self, /, **values: str) -> bool:
        """Stop exporting the series with these label values (a deleted subnet); whether it
        existed. Recording into a child obtained earlier afterwards is harmless but unseen."""
        if not self.labelnames:
            raise ValueError(f"metric {self.name!r} has no labels; there is no series to remove")
        key = self._key(values)
        with self._lock:
            return self._children.pop(key, None) is not None

    def clear(self) -> None:
        """Drop every labelled series (for a resync that rebuilds them all)."""
        if not self.labelnames:
            raise ValueError(f"metric {self.name!r} has no labels; there is no series to clear")
        with self._lock:
            self._children.clear()

    def _key(self, values: dict[str, str]) -> tuple[str, ...]:
        if set(values) != set(self.labelnames):
            missing = sorted(set(self.labelnames) - set(values))
            unexpected = sorted(set(values) - set(self.labelnames))
            raise ValueError(
                f"metric {self.name!r} takes labels {list(self.labelnames)}; "
                f"missing {missing}, unexpected {unexpected}"
            )
        for label, value in values.items():
            if not isinstance(value, str):
                raise ValueError(
                    f"metric {self.name!r}: label {label!r} must be a str, "
                    f"got {type(value).__name__}"
                )
        return tuple(values[label] for label in self.labelnames)

    def _only_series(self) -> _S:
        if self.labelnames:
            raise ValueError(
                f"metric {self.name!r} has labels {list(self.labelnames)}; "
                "use .labels(...) to pick a series"
            )
        return self._children[()]

    def render(self) -> str:
        """This family's HELP, TYPE and sample lines."""
        with self._lock:
            children = sorted(self._children.items())
        lines = [
            f"# HELP {self.name} {_escape_help(self.documentation)}",
            f"# TYPE {self.name} {self.type_name}",
        ]
        for key, series in children:  # collected outside the family lock: callbacks may block
            labels = tuple(zip(self.labelnames, key, strict=True))
            for sample in series._collect():
                pairs = labels + sample.extra_labels
                rendered = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in pairs)
                braces = f"{{{rendered}}}" if pairs else ""
                lines.append(f"{self.name}{sample.suffix}{braces} {format_value(sample.value)}")
        return "\n".join(lines) + "\n"


class Counter(_Family[CounterSeries]):
    """Counts events (allocations, CNI calls, errors); by convention named ``..._total``."""

    type_name = "counter"

    def _new_series(self) -> CounterSeries:
        return CounterSeries()

    def inc(self, amount: float = 1.0) -> None:
        self._only_series().inc(amount)

    @property
    def value(self) -> float:
        return self._only_series().value


class Gauge(_Family[GaugeSeries]):
    """A current level (addresses in use, watch connections), set or computed at scrape time."""

    type_name = "gauge"

    def _new_series(self) -> GaugeSeries:
        return GaugeSeries()

    def set(self, value: float) -> None:
        self._only_series().set(value)

    def inc(self, amount: float = 1.0) -> None:
        self._only_series().inc(amount)

    def dec(self, amount: float = 1.0) -> None:
        self._only_series().dec(amount)

    def set_function(self, function: Callable[[], float]) -> None:
        """See :meth:`GaugeSeries.set_function`."""
        self._only_series().set_function(function)

    @property
    def value(self) -> float:
        return self._only_series().value


class Histogram(_Family[HistogramSeries]):
    """A distribution (latencies) in fixed buckets, aggregatable across pods with
    histogram_quantile(), which a client-side summary would not be."""

    type_name = "histogram"
    _reserved_labels = ("le",)
    _suffixes = _HISTOGRAM_SUFFIXES

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        bounds = [float(bound) for bound in buckets]
        if bounds and bounds[-1] == math.inf:
            bounds.pop()  # +Inf is always there; accept it being spelled out
        if not bounds:
            raise ValueError(f"histogram {name!r} needs at least one finite bucket bound")
        if any(math.isnan(bound) or math.isinf(bound) for bound in bounds):
            raise ValueError(f"histogram {name!r}: bucket bounds must be finite, got {buckets}")
        if any(a >= b for a, b in itertools.pairwise(bounds)):
            raise ValueError(
                f"histogram {name!r}: bucket bounds must be strictly increasing, got {buckets}"
            )
        self.buckets: tuple[float, ...] = tuple(bounds)
        super().__init__(name, documentation, labelnames)

    def _new_series(self) -> HistogramSeries:
        return HistogramSeries(self.buckets)

    def observe(self, value: float) -> None:
        self._only_series().observe(value)

    def time(self) -> contextlib.AbstractContextManager[None]:
        """See :meth:`HistogramSeries.time`."""
        return self._only_series().time()

    @property
    def count(self) -> int:
        return self._only_series().count

    @property
    def sum(self) -> float:
        return self._only_series().sum


Metric = Counter | Gauge | Histogram


class Registry:
    """The metric families one component exports, rendered together on a scrape."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._families: dict[str, Metric] = {}
        self._claimed: dict[str, str] = {}  # family or sample name -> family

    def register(self, metric: Metric) -> None:
        """Add a family; refuses one whose name or sample names collide with a registered
        family's (a histogram ``x`` writes ``x_count``, so a counter ``x_count`` would corrupt
        both)."""
        names = metric.claimed_names()
        with self._lock:
            for sample_name in names:
                owner = self._claimed.get(sample_name)
                if owner is not None:
                    raise ValueError(
                        f"metric {metric.name!r}: name {sample_name!r} is already "
                        f"used by registered metric {owner!r}"
                    )
            self._families[metric.name] = metric
            for sample_name in names:
                self._claimed[sample_name] = metric.name

    def unregister(self, name: str) -> None:
        """Drop a whole family; KeyError if it is not registered."""
        with self._lock:
            metric = self._families.pop(name)
            for sample_name in metric.claimed_names():
                del self._claimed[sample_name]

    def get(self, name: str) -> Metric:
        """The registered family called ``name``; KeyError if there is none."""
        with self._lock:
            return self._families[name]

    def counter(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> Counter:
        metric = Counter(name, documentation, labelnames)
        self.register(metric)
        return metric

    def gauge(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> Gauge:
        metric = Gauge(name, documentation, labelnames)
        self.register(metric)
        return metric

    def histogram(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> Histogram:
        metric = Histogram(name, documentation, labelnames, buckets)
        self.register(metric)
        return metric

    def remove(self, name: str, /, **labels: str) -> bool:
        """Stop exporting one series of family ``name``; whether it existed.

        ``name`` is positional-only so that a label may itself be called ``name``.
        """
        return self.get(name).remove(**labels)

    def render(self) -> str:
        """Every family in text format 0.0.4, sorted by name for stable output."""
        with self._lock:
            families = sorted(self._families.items())
        return "".join(metric.render() for _, metric in families)


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True  # a stuck scrape must not keep the process alive at exit

    def __init__(self, address: tuple[str, int], registry: Registry) -> None:
        self.registry = registry
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        dual_stack(self.socket)
        super().server_bind()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _HTTPServer

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/metrics":
            try:
                body = self.server.registry.render().encode()
            except Exception:
                log.exception("rendering metrics failed")
                self._reply(500, b"rendering metrics failed\n", "text/plain; charset=utf-8")
                return
            self._reply(200, body, CONTENT_TYPE)
        elif path == "/healthz":
            self._reply(200, b"ok", "text/plain; charset=utf-8")
        else:
            self._reply(404, b"not found\n", "text/plain; charset=utf-8")

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        # The base class writes every request to stderr; scrapes every few seconds would bury
        # the component's own JSON log lines.
        log.debug("metrics http: " + format, *args)


class MetricsServer:
    """Serves ``GET /metrics`` (the registry) and ``GET /healthz`` from a daemon thread.

    Port 0 picks a free port (tests); :attr:`port` is the one bound. Each request runs on its
    own thread, so a slow scraper does not hold up a liveness probe.
    """

    def __init__(self, registry: Registry, host: str, port: int) -> None:
        self.registry = registry
        self.host = host
        self._requested_port = port
        self._server: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port; only known once started."""
        if self._server is None:
            raise RuntimeError("metrics server is not started")
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Bind and serve in a daemon thread; binding errors (port in use) raise here."""
        if self._server is not None:
            raise RuntimeError("metrics server already started")
        server = _HTTPServer((self.host, self._requested_port), self.registry)
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"metrics-http-{server.server_address[1]}",
            daemon=True,
        )
        thread.start()
        self._server, self._thread = server, thread
        log.info("metrics server listening on %s port %d", self.host, self.port)

    def stop(self) -> None:
        """Stop serving and close the socket; safe to call twice or before start()."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join()

    def __enter__(self) -> MetricsServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def all_interfaces() -> str:
    """What an empty host (``:9899``) means: every address of the pod or node, IPv6 and IPv4
    alike (``::`` accepts both), or every IPv4 address where the kernel has no IPv6."""
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_STREAM).close()
    except OSError:
        return "0.0.0.0"  # noqa: S104
    return "::"


def dual_stack(server_socket: socket.socket) -> None:
    """A socket bound to ``::`` takes IPv4 connections too, whatever net.ipv6.bindv6only says
    (probes of a host-network pod come from the node's first address family)."""
    if server_socket.family == socket.AF_INET6:
        server_socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)


def parse_address(text: str) -> tuple[str, int]:
    """``host:port`` as the components' flags take it (an empty host: all interfaces).
    ValueError says what is wrong, for a one-line command-line error."""
    host, sep, port = text.rpartition(":")
    if (
        not sep
        or not port.isdigit()
        or not 0 <= int(port) <= 65535
        or any(c.isspace() for c in host)
    ):
        raise ValueError(f"{text!r} is not host:port")
    return host.strip("[]") or all_interfaces(), int(port)


def serve_metrics(registry: Registry, address: str) -> MetricsServer | None:
    """Start /metrics on ``address`` (``host:port``); None when ``address`` is empty."""
    if not address:
        return None
    server = MetricsServer(registry, *parse_address(address))
    server.start()
    return server
