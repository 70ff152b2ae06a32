"""Reading a component's /metrics as Prometheus would: over HTTP, with prometheus_client's parser
(not the exposition code's own idea of its output)."""

from __future__ import annotations

import http.client

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families


def get(
    host: str, port: int, path: str, accept: str | None = None
) -> tuple[int, str | None, bytes]:
    """(status, Content-Type, body) of one GET."""
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.request("GET", path, headers={"Accept": accept} if accept else {})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        connection.close()


def parse(text: str) -> dict[str, Metric]:
    """Metric families by name (a histogram's name has no ``_bucket``/``_count`` suffix)."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def scrape(host: str, port: int) -> dict[str, Metric]:
    """The families a GET /metrics answers; AssertionError unless it answers 200."""
    status, _, body = get(host, port, "/metrics")
    assert status == 200, (status, body)
    return parse(body.decode())


def value(families: dict[str, Metric], sample: str, **labels: str) -> float | None:
    """The value of the sample called ``sample`` with exactly these labels, None if absent."""
    for family in families.values():
        for found in family.samples:
            if found.name == sample and found.labels == labels:
                return float(found.value)
    return None
