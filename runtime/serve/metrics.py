"""GET /metrics (issue 22): the service's series in the Prometheus text format, in a registry of
this app's own (several apps in one process, as in the tests, do not share series)."""
from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

STORE_COUNTERS = {
    "hits": "person store lookups that found the person (on Ray Serve: the Ingress's and the Parse replicas')",
    "misses": "person store lookups that found no person: unknown, expired, evicted, or the store down (on Ray "
              "Serve: the Ingress's and the Parse replicas')",
    "evictions": "persons this process removed from the store because they expired or to stay under its size cap "
                 "(memory and SQLite stores; a Redis server expires and evicts on its own and has no such series)",
}
SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})  # others: "other", a bounded label
TIMING = re.compile(r"([\w.-]+)\s*;[^,]*?dur=([0-9.]+)")  # a Server-Timing entry: name;dur=ms


class Metrics:
    def __init__(self, service):
        self.service = service
        self.registry = registry = CollectorRegistry()
        self.requests = Counter("tryon_requests", "answers by route template, method and status",
                                ["route", "method", "status"], registry=registry)
        self.latency = Histogram("tryon_request_seconds", "time to the answer's end, by route template", ["route"],
                                 buckets=SECONDS, registry=registry)
        self.stages = Histogram("tryon_stage_seconds", "each step an answer's Server-Timing header names",
                                ["stage"], buckets=SECONDS, registry=registry)
        self.in_flight = Gauge("tryon_requests_in_flight", "requests being answered", registry=registry)
        facts = service.inference.describe()
        Info("tryon_models", "what runs: JPP-Net graph and precision, providers, synthetic weights",
             registry=registry).info({
                 "graph": str(facts.get("jppnet_graph")), "family": str(facts.get("family")),
                 "precision": str(facts.get("stages", {}).get("parse", {}).get("precision")),
                 "providers": ",".join(facts.get("providers", ())), "synthetic": str(facts["synthetic"]).lower()})
        registry.register(_AtScrape(service))

    def observe(self, route: str, method: str, status: int, seconds: float, server_timing: str):
        self.requests.labels(route, method if method in METHODS else "other", str(status)).inc()
        self.latency.labels(route).observe(seconds)
        for name, ms in TIMING.findall(server_timing):
            self.stages.labels(name).observe(float(ms) / 1e3)

    def exposition(self) -> bytes:
        """The text format; reads the store, so call it in a worker thread."""
        return generate_latest(self.registry)


class _AtScrape:
    """Series read when Prometheus asks: the inference gate's load, the person store's counters and size."""

    def __init__(self, service):
        self.service = service

    def describe(self):
        return []  # nothing to register up front: the store is not read until a scrape

    def collect(self):
        load = self.service.inference.load()
        yield GaugeMetricFamily("tryon_inference_admitted", "inferences running or queued", load["in_flight"])
        yield GaugeMetricFamily("tryon_inference_waiting", "inferences queued for a slot",
                                max(0, load["in_flight"] - load["max_concurrent"]))
        for name, count in self.service.store.counters().items():  # counted here: never asks the store
            yield CounterMetricFamily(f"tryon_store_{name}", STORE_COUNTERS[name], count)
        try:
            info = self.service.store.info()
        except Exception:  # noqa: BLE001 -- a store that does not answer has no series; /readyz says why
            return
        for field in ("persons", "bytes"):
            if field in info:
                yield GaugeMetricFamily(f"tryon_store_{field}", f"{field} the person store keeps", info[field])
