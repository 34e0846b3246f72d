"""Prometheus metrics of one server (a registry per app: no module-level state)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from chinwag.types import Usage


class Metrics:
    """Counters and histograms exposed at ``/metrics`` (Prometheus text format).

    - ``chinwag_requests_total{route,status}``
    - ``chinwag_prompt_tokens_total``, ``chinwag_completion_tokens_total``
    - ``chinwag_time_to_first_token_seconds`` (histogram)
    - ``chinwag_tokens_per_second`` (histogram, decode speed of each generation)
    - ``chinwag_queue_depth`` (requests waiting for the model)
    - ``chinwag_kv_cache_hits_total{source="slot|ram|disk"}``, ``chinwag_kv_cache_misses_total``,
      ``chinwag_kv_cache_evictions_total``, ``chinwag_kv_cache_cached_tokens_total``,
      ``chinwag_kv_cache_ram_bytes``: the backend's prompt cache, read at each scrape
    - ``chinwag_engine_steps_total``, ``chinwag_engine_batch_tokens_total``,
      ``chinwag_engine_{decode,sample,step}_seconds_total``,
      ``chinwag_engine_generations_total{event="admitted|cancelled|failed"}``,
      ``chinwag_engine_slot_moves_total``, ``chinwag_engine_active``,
      ``chinwag_engine_waiting``: the engine's step loop (where a step's time goes), read at
      each scrape (added up over the loaded models)
    - ``chinwag_model_loads_total{model}``, ``chinwag_model_load_failures_total{model}``,
      ``chinwag_model_load_seconds{model}`` (histogram),
      ``chinwag_model_unloads_total{model,reason="max_models|memory|idle|request|shutdown"}``,
      ``chinwag_model_loaded{model}`` (1 while loaded): the models loaded on demand
    - ``chinwag_hook_events_total{platform="slack|discord|teams",outcome="answered|failed|
      duplicate|ignored|refused"}``: the platform hooks' requests

    Args:
        cache_stats: returns the backend's prompt-cache counters
            (``LanguageBackend.cache_stats``); None or ``{}``: no cache metrics.
        engine_stats: returns the backend's step-loop counters
            (``LanguageBackend.engine_stats``); None or ``{}``: no engine metrics.
    """

    def __init__(self, cache_stats: Callable[[], dict[str, int]] | None = None,
                 engine_stats: Callable[[], dict[str, float]] | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        if cache_stats is not None:
            r.register(_CacheCollector(cache_stats))
        if engine_stats is not None:
            r.register(_EngineCollector(engine_stats))
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
        self.model_loads = Counter("chinwag_model_loads", "Models loaded", ["model"], registry=r)
        self.model_load_failures = Counter("chinwag_model_load_failures",
                                           "Model loads that failed", ["model"], registry=r)
        self.model_load_seconds = Histogram("chinwag_model_load_seconds",
                                            "Seconds to load a model", ["model"], registry=r,
                                            buckets=(0.25, 0.5, 1, 2, 5, 10, 30, 60, 120))
        self.model_unloads = Counter("chinwag_model_unloads",
                                     "Models unloaded, by reason (evictions: max_models, "
                                     "memory, idle)", ["model", "reason"], registry=r)
        self.models_loaded = Gauge("chinwag_model_loaded", "1 while the model is loaded",
                                   ["model"], registry=r)
        self.hook_events = Counter(
            "chinwag_hook_events", "Slack, Discord and Teams events by outcome (answered, "
            "failed, duplicate, ignored, refused)", ["platform", "outcome"], registry=r)

    def model_loaded(self, model: str, seconds: float) -> None:
        """``model`` was loaded in ``seconds``."""
        self.model_loads.labels(model).inc()
        self.model_load_seconds.labels(model).observe(seconds)
        self.models_loaded.labels(model).set(1)

    def model_load_failed(self, model: str) -> None:
        """Loading ``model`` failed."""
        self.model_load_failures.labels(model).inc()

    def model_unloaded(self, model: str, reason: str) -> None:
        """``model`` was unloaded for ``reason``."""
        self.model_unloads.labels(model, reason).inc()
        self.models_loaded.labels(model).set(0)

    def generation(self, usage: Usage, ttft: float | None, decode_seconds: float) -> None:
        """Record one finished generation (token counts, first-token latency, speed)."""
        self.prompt_tokens.inc(usage.prompt_tokens)
        self.completion_tokens.inc(usage.completion_tokens)
        if ttft is not None:
            self.ttft.observe(ttft)
        if usage.completion_tokens > 1 and decode_seconds > 0:
            self.tokens_per_second.observe((usage.completion_tokens - 1) / decode_seconds)

    def timer(self) -> GenerationTimer:
        """A timer for one generation starting now (see ``GenerationTimer``)."""
        return GenerationTimer(self)

    def render(self) -> bytes:
        """The metrics in Prometheus' text exposition format."""
        return generate_latest(self.registry)


class GenerationTimer:
    """Times one generation as its client sees it and records it in ``Metrics``: the time to
    the first piece of the reply (TTFT, from the timer's creation, so time in the queue
    counts), then the decode speed from the first piece to the end.

    Call ``piece()`` as each piece arrives and ``done(usage)`` once at the end.
    """

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._started = time.perf_counter()
        self._first: float | None = None

    def piece(self) -> None:
        """A piece of the reply arrived (only the first one is timed)."""
        if self._first is None:
            self._first = time.perf_counter()

    def done(self, usage: Usage) -> None:
        """The generation ended with ``usage``: record it."""
        now = time.perf_counter()
        ttft = None if self._first is None else self._first - self._started
        self._metrics.generation(usage, ttft, now - (self._first or now))


class _CacheCollector(Collector):
    """Prompt-cache counters, read from the backend when ``/metrics`` is scraped."""

    def __init__(self, stats: Callable[[], dict[str, int]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        if not stats:
            return
        hits = CounterMetricFamily("chinwag_kv_cache_hits",
                                   "Requests that started from cached KV cells, by source",
                                   labels=["source"])
        for source in ("slot", "ram", "disk"):
            hits.add_metric([source], stats.get(f"hits_{source}", 0))
        yield hits
        yield CounterMetricFamily("chinwag_kv_cache_misses",
                                  "Requests that found no cached prefix",
                                  value=stats.get("misses", 0))
        yield CounterMetricFamily("chinwag_kv_cache_evictions",
                                  "KV states dropped from RAM for room (kept on disk if "
                                  "written)", value=stats.get("evictions", 0))
        yield CounterMetricFamily("chinwag_kv_cache_cached_tokens",
                                  "Prompt tokens not computed thanks to the cache",
                                  value=stats.get("cached_tokens", 0))
        yield GaugeMetricFamily("chinwag_kv_cache_ram_bytes",
                                "Bytes of KV state held in RAM", value=stats.get("ram_bytes", 0))


class _EngineCollector(Collector):
    """Step-loop counters, read from the backend when ``/metrics`` is scraped."""

    def __init__(self, stats: Callable[[], dict[str, float]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        if not stats:
            return
        yield CounterMetricFamily("chinwag_engine_steps", "llama_decode calls of the step loop",
                                  value=stats.get("steps", 0))
        yield CounterMetricFamily("chinwag_engine_batch_tokens",
                                  "Tokens carried by the step loop's llama_decode calls",
                                  value=stats.get("batch_tokens", 0))
        for part, what in (("decode", "inside llama_decode"), ("sample", "sampling"),
                           ("step", "in whole steps")):
            yield CounterMetricFamily(f"chinwag_engine_{part}_seconds",
                                      f"Seconds the step loop spent {what}",
                                      value=stats.get(f"{part}_seconds", 0.0))
        yield CounterMetricFamily("chinwag_engine_slot_moves",
                                  "Kept KV cells copied to a slot next to the running ones",
                                  value=stats.get("slot_moves", 0))
        generations = CounterMetricFamily("chinwag_engine_generations",
                                          "Generations by event", labels=["event"])
        for event in ("admitted", "cancelled", "failed"):
            generations.add_metric([event], stats.get(event, 0))
        yield generations
        yield GaugeMetricFamily("chinwag_engine_active", "Generations holding a slot",
                                value=stats.get("active", 0))
        yield GaugeMetricFamily("chinwag_engine_waiting", "Generations waiting for a slot",
                                value=stats.get("waiting", 0))
