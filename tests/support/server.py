"""Reading a running server's ``/metrics``."""

from __future__ import annotations

import httpx


def metric(url: str, name: str) -> float:
    """The value of one sample of ``url``'s Prometheus metrics (``name`` with its labels as
    the server writes them, e.g. ``chinwag_engine_generations_total{event="admitted"}``)."""
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        sample, _, value = line.rpartition(" ")
        if sample == name:
            return float(value)
    raise AssertionError(f"{name} not in {url}/metrics")
