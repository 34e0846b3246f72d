"""Prometheus metrics of one server (a registry per app: no module-level state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from chinwag.types import Usage


class Metrics:
    """Counters and histograms exposed at ``/metrics`` (Prometheus text format).

    - ``chinwag_requests_total{route,status}``
    - ``chinwag_prompt_tokens_total``, ``chinwag_completion_tokens_total``
    - ``chinwag_time_to_first_token_seconds`` (histogram)
    - ``chinwag_tokens_per_second`` (histogram, decode speed of each generation)
    - ``chinwag_queue_depth`` (requests waiting for the model)
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("chinwag_requests", "HTTP requests by route and status",
                                ["route", "status"], registry=r)
        self.prompt_tokens = Counter("chinwag_prompt_tokens", "Prompt tokens processed",
                                     registry=r)
        self.completion_tokens = Counter("chinwag_completion_tokens", "Tokens generated",
                                         registry=r)
        self.ttft = Histogram("chinwag_time_to_first_token_seconds",
                              "Seconds from request to first token", registry=r,
                              buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30))
        self.tokens_per_second = Histogram("chinwag_tokens_per_second",
                                           "Decode speed of each generation", registry=r,
                                           buckets=(1, 5, 10, 20, 40, 60, 80, 120, 200, 400))
        self.queue_depth = Gauge("chinwag_queue_depth", "Requests waiting for the model",
                                 registry=r)

    def generation(self, usage: Usage, ttft: float | None, decode_seconds: float) -> None:
        """Record one finished generation (token counts, first-token latency, speed)."""
        self.prompt_tokens.inc(usage.prompt_tokens)
        self.completion_tokens.inc(usage.completion_tokens)
        if ttft is not None:
            self.ttft.observe(ttft)
        if usage.completion_tokens > 1 and decode_seconds > 0:
            self.tokens_per_second.observe((usage.completion_tokens - 1) / decode_seconds)

    def render(self) -> bytes:
        """The metrics in Prometheus' text exposition format."""
        return generate_latest(self.registry)
