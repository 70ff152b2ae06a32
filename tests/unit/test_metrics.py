"""hybridnet.metrics: ``--metrics-address`` parsing, and the /metrics + /healthz server over
IPv4, IPv6 and both, read back with prometheus_client's parser."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.registry import Collector

from hybridnet.metrics import (
    LATENCY_BUCKETS,
    MetricsError,
    MetricsServer,
    all_interfaces,
    dual_stack,
    new_registry,
    parse_address,
    serve_metrics,
)
from tests.scrape import get, parse, scrape, value


def have_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not have_ipv6_loopback(), reason="no IPv6 loopback here")


def a_registry() -> CollectorRegistry:
    """One of each kind, with labels, as the components build theirs."""
    registry = new_registry()
    Counter("requests_total", "Requests.", registry=registry).inc(4)
    Gauge("addresses", "Addresses by state.", ["subnet", "state"], registry=registry).labels(
        subnet="s1", state="used"
    ).set(3)
    latency = Histogram(
        "call_seconds", "Calls.", ["method"], registry=registry, buckets=LATENCY_BUCKETS
    )
    latency.labels(method="Add").observe(0.002)
    return registry


@pytest.fixture
def served() -> Iterator[MetricsServer]:
    with MetricsServer(a_registry(), "127.0.0.1", 0) as server:
        yield server


# --- --metrics-address -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9899", ("127.0.0.1", 9899)),
        ("localhost:80", ("localhost", 80)),
        ("[::1]:80", ("::1", 80)),
        ("[2001:db8::5]:0", ("2001:db8::5", 0)),
        ("0.0.0.0:65535", ("0.0.0.0", 65535)),  # noqa: S104
    ],
)
def test_parse_address_reads_host_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


def test_an_empty_host_means_every_address() -> None:
    assert parse_address(":9899") == (all_interfaces(), 9899)
    assert all_interfaces() == ("::" if have_ipv6_loopback() else "0.0.0.0")  # noqa: S104


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("nope", "is not host:port"),
        ("host:", "is not host:port"),
        ("host:99999", "is not host:port"),
        ("host:-1", "is not host:port"),
        ("host:1e3", "is not host:port"),
        ("host:\u00b9", "is not host:port"),  # a superscript is a digit to str.isdigit
        ("a b:1", "is not host:port"),
        ("::1:80", "goes in brackets"),
        ("[::1:80", "not an IPv6 address in brackets"),
        ("::1]:80", "not an IPv6 address in brackets"),
        ("[127.0.0.1]:80", "not an IPv6 address in brackets"),
        ("[]:80", "not an IPv6 address in brackets"),
    ],
)
def test_a_malformed_address_is_refused_in_one_line(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as refused:
        parse_address(text)
    assert "\n" not in str(refused.value) and repr(text) in str(refused.value)


# --- the server ------------------------------------------------------------------------------


def test_metrics_are_served_in_the_text_format(
    served: MetricsServer, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="hybridnet.metrics"):
        status, content_type, body = get("127.0.0.1", served.port, "/metrics")
    assert (status, content_type) == (200, "text/plain; version=0.0.4; charset=utf-8")
    families = parse(body.decode())
    assert families["requests"].type == "counter"
    assert families["requests"].documentation == "Requests."
    assert value(families, "requests_total") == 4
    assert value(families, "addresses", subnet="s1", state="used") == 3
    assert families["call_seconds"].type == "histogram"
    buckets = {
        s.labels["le"]: s.value
        for s in families["call_seconds"].samples
        if s.name.endswith("_bucket")
    }
    assert list(buckets) == [*(repr(bound) for bound in LATENCY_BUCKETS), "+Inf"]
    assert buckets["0.001"] == 0 and buckets["0.0025"] == 1 and buckets["+Inf"] == 1
    assert value(families, "call_seconds_count", method="Add") == 1
    # No prometheus_client '_created' series: new_registry() turns them off.
    assert not [s for f in families.values() for s in f.samples if s.name.endswith("_created")]
    assert capsys.readouterr().err == ""  # no per-request lines on stderr
    assert any("GET /metrics" in record.getMessage() for record in caplog.records)


def test_openmetrics_is_served_to_a_scraper_that_asks_for_it(served: MetricsServer) -> None:
    status, content_type, body = get(
        "127.0.0.1", served.port, "/metrics", accept="application/openmetrics-text; version=1.0.0"
    )
    assert status == 200 and content_type is not None
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    parsed = openmetrics_families(body.decode())  # type: ignore[no-untyped-call]
    families = {f.name: f for f in parsed}
    assert [s.value for s in families["requests"].samples if s.name == "requests_total"] == [4]


def test_healthz_answers_ok_and_other_paths_404(served: MetricsServer) -> None:
    assert get("127.0.0.1", served.port, "/healthz")[::2] == (200, b"ok")
    assert get("127.0.0.1", served.port, "/metrics?name[]=requests_total")[0] == 200
    for path in ("/", "/metrics/", "/favicon.ico", "/healthz/x"):
        assert get("127.0.0.1", served.port, path)[0] == 404


def test_scrapes_see_updates_and_registries_are_independent() -> None:
    first, second = new_registry(), new_registry()
    count = Counter("events_total", "Events.", registry=first)
    Counter("events_total", "The same name in another component.", registry=second).inc(7)
    with MetricsServer(first, "127.0.0.1", 0) as server:
        assert value(scrape("127.0.0.1", server.port), "events_total") == 0
        count.inc()
        assert value(scrape("127.0.0.1", server.port), "events_total") == 1


class _Broken(Collector):
    def collect(self) -> Iterator[Metric]:
        raise RuntimeError("the state behind this collector is gone")


def test_a_failing_collector_answers_500_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    registry = a_registry()
    broken = _Broken()
    registry.register(broken)
    with MetricsServer(registry, "127.0.0.1", 0) as server:
        with caplog.at_level(logging.ERROR, logger="hybridnet.metrics"):
            assert get("127.0.0.1", server.port, "/metrics")[0] == 500
        assert [r.getMessage() for r in caplog.records] == ["rendering metrics failed"]
        assert get("127.0.0.1", server.port, "/healthz")[0] == 200
        registry.unregister(broken)
        assert value(scrape("127.0.0.1", server.port), "requests_total") == 4


def test_stop_closes_the_port_and_is_idempotent(served: MetricsServer) -> None:
    port = served.port
    served.stop()
    served.stop()
    with pytest.raises(ConnectionRefusedError):
        get("127.0.0.1", port, "/healthz")
    with pytest.raises(RuntimeError, match="not started"):
        _ = served.port


def test_a_port_in_use_fails_at_start(served: MetricsServer) -> None:
    with pytest.raises(OSError, match="in use"):
        MetricsServer(new_registry(), "127.0.0.1", served.port).start()


def test_serve_metrics_names_the_address_it_cannot_bind(served: MetricsServer) -> None:
    """The components print this one line and exit; the OSError's traceback is for nobody."""
    address = f"127.0.0.1:{served.port}"
    with pytest.raises(MetricsError) as caught:
        serve_metrics(new_registry(), address)
    assert str(caught.value) == f"cannot serve metrics on {address}: Address already in use"


def test_serve_metrics_is_off_for_an_empty_address() -> None:
    assert serve_metrics(new_registry(), "") is None
    server = serve_metrics(a_registry(), "127.0.0.1:0")
    assert server is not None
    try:
        assert value(scrape("127.0.0.1", server.port), "requests_total") == 4
    finally:
        server.stop()


@needs_ipv6
def test_metrics_on_ipv6_loopback() -> None:
    with MetricsServer(a_registry(), *parse_address("[::1]:0")) as server:
        assert value(scrape("::1", server.port), "addresses", subnet="s1", state="used") == 3
        with pytest.raises(ConnectionRefusedError):
            get("127.0.0.1", server.port, "/healthz")  # ::1 is IPv6 only, as asked


@needs_ipv6
def test_an_empty_host_serves_ipv6_and_ipv4() -> None:
    """Probes of a host-network pod come from the node's first address family, which may be
    IPv6: ``:port`` must answer on both."""
    with MetricsServer(a_registry(), *parse_address(":0")) as server:
        for host, family in (("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)):
            with socket.create_connection((host, server.port), timeout=5) as conn:
                assert conn.family == family
            assert value(scrape(host, server.port), "requests_total") == 4


@needs_ipv6
def test_dual_stack_does_not_depend_on_bindv6only() -> None:
    """The kernel's default for new IPv6 sockets (net.ipv6.bindv6only) may be 1; the server's
    socket clears IPV6_V6ONLY itself, so ``::`` takes IPv4 on such a node too."""
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # as bindv6only=1 leaves it
        dual_stack(sock)
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0
