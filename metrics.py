"""Prometheus metrics of one process: HTTP requests, durable jobs and sends left in doubt, in
their own registry."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "ordertalk_http_requests",
            "HTTP requests answered, by route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "ordertalk_http_request_duration_seconds",
            "Time to answer an HTTP request.",
            ["route"],
            registry=self.registry,
        )
        # The label children of each (method, route, status) and route, looked up once.
        self._http_counts: dict[tuple[str, str, int], Any] = {}
        self._http_durations: dict[str, Any] = {}
        self.jobs = Gauge(
            "ordertalk_jobs",
            "Jobs in the jobs table, by state (read at scrape time).",
            ["state"],
            registry=self.registry,
        )
        self.job_backlog_age = Gauge(
            "ordertalk_job_lag_seconds",
            "How long the oldest due, queued job has waited past its due time.",
            registry=self.registry,
        )
        self.job_start_lag = Histogram(
            "ordertalk_job_start_lag_seconds",
            "Delay from a job's due time to its start, in this process's workers.",
            ["kind"],
            buckets=_LAG_BUCKETS,
            registry=self.registry,
        )
        self.job_runs = Counter(
            "ordertalk_job_runs",
            "Job executions in this process's workers, by outcome (done, retry, dead).",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.sends_in_doubt = Counter(
            "ordertalk_sends_in_doubt",
            "Messages and calls whose request went out but got no answer (a timeout or a "
            "dropped connection): recorded unconfirmed, never sent again; by provider and "
            "kind (sms, whatsapp, call).",
            ["provider", "kind"],
            registry=self.registry,
        )

    def http_answered(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered HTTP request and observe how long it took."""
        count = self._http_counts.get((method, route, status))
        if count is None:
            count = self.http_requests.labels(method, route, str(status))
            self._http_counts[(method, route, status)] = count
        count.inc()
        duration = self._http_durations.get(route)
        if duration is None:
            duration = self._http_durations[route] = self.http_duration.labels(route)
        duration.observe(seconds)
