"""The gateway's Prometheus metrics, in one place: each app has a registry of its own (never the global
one, so many gateways can live in one process, as in the tests), served at ``/metrics``.

Services report events here (an alert created, a page finished, a call placed, a caller waiting); the
state the gateway already holds (queues, lines, provider health) is read at scrape time by
:class:`LiveState`. Labels stay bounded: sources, routes, teams' hotlines, providers, channels, outcomes
and priorities come from code or the operator's config, never from an alert id, a number or free text.

Alert status is a counter of transitions (``gateway_alert_status_changes_total``), not a gauge of alerts
per status: a gauge would have to be read from the store on every scrape, and with several gateways on
one PostgreSQL each would report the same alerts; counters sum across gateways and restarts (``rate()``,
``increase()``), and "triggered minus acknowledged and resolved" is what an open-alerts panel wants.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.dispatch import QueueStats

# ``*_created`` series (one per counter and histogram child) double the page and no dashboard reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

#: seconds, from an alert to its first call (queueing and the provider's REST round trip) ...
DIAL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
#: ... and from an alert, or a hotline caller's call, to a person (minutes, with escalation steps)
HUMAN_BUCKETS = (5, 10, 20, 30, 60, 120, 300, 600, 900, 1800, 3600)
K = TypeVar("K")
V = TypeVar("V")

#: alerts and calls remembered at most while waiting for their first dial (bounded memory)
_MAX_PENDING = 20_000


class Telemetry:
    """The metric objects, and the small bookkeeping some of them need (which provider carried a page,
    which alert was dialled already, which hotline callers are waiting)."""

    def __init__(self, *, process: bool = False) -> None:
        self.registry = registry = CollectorRegistry()
        if process:  # prometheus_client's default process, platform and GC collectors
            ProcessCollector(registry=registry)
            registry.register(PLATFORM_COLLECTOR)
            registry.register(GC_COLLECTOR)
        self.alerts_received = Counter(
            "gateway_alerts_received", "Alerts created, by source (api, alertmanager, hotline, ...) and route.",
            ["source", "route"], registry=registry)
        self.alert_status_changes = Counter(
            "gateway_alert_status_changes",
            "Alerts entering a status: triggered (created), acknowledged, resolved.", ["status"], registry=registry)
        self.pages = Counter(
            "gateway_pages", "Pages finished, by channel (call, sms), provider (none: no provider took it here) "
            "and outcome.", ["channel", "provider", "outcome"], registry=registry)
        self.alert_to_first_dial = Histogram(
            "gateway_alert_to_first_dial_seconds", "From an alert's creation to its first call placed.",
            registry=registry, buckets=DIAL_BUCKETS)
        self.time_to_acknowledge = Histogram(
            "gateway_time_to_acknowledge_seconds", "From an alert's creation to its acknowledgement.",
            ["source", "priority"], registry=registry, buckets=HUMAN_BUCKETS)
        self.provider_errors = Counter(
            "gateway_provider_errors", "Failures a provider reported or raised (a call or SMS it could not carry).",
            ["provider"], registry=registry)
        self.webhook_signature_failures = Counter(
            "gateway_webhook_signature_failures", "Provider webhooks refused for a missing or wrong signature.",
            ["provider", "reason"], registry=registry)
        self.hotline_callers_waiting = Gauge(
            "gateway_hotline_callers_waiting", "Hotline callers waiting now for an engineer, on this gateway.",
            ["hotline"], registry=registry)
        self.hotline_wait = Histogram(
            "gateway_hotline_wait_seconds", "How long a hotline caller waited: until connected, or until the "
            "call ended without an engineer (voicemail, missed, hung up).", ["outcome"], registry=registry,
            buckets=HUMAN_BUCKETS)
        self._carrier: dict[str, str] = {}  # call or SMS id -> the provider that took it
        self._first_dial: dict[str, tuple[int, float]] = {}  # call id -> (alert id, alert created at)
        self._dialled: dict[int, None] = {}  # alerts whose first call was placed (ordered: oldest forgotten)
        self._waiting: dict[str, _Waiting] = {}  # hotline call id -> its caller

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)

    def watch(self, state: LiveState) -> None:
        self.registry.register(state)

    # -------------------------------------------------------------- alerts

    def alert_created(self, *, source: str, route: str) -> None:
        self.alerts_received.labels(source=source, route=route).inc()
        self.alert_status_changes.labels(status="triggered").inc()

    def alert_changed(self, *, status: str, source: str, priority: str, created_at: float, now: float) -> None:
        self.alert_status_changes.labels(status=status).inc()
        if status == "acknowledged":
            self.time_to_acknowledge.labels(source=source, priority=priority).observe(max(0.0, now - created_at))

    # --------------------------------------------------------------- pages

    def not_timed(self, alert_id: int) -> None:
        """``alert_id``'s first call is not timed from its creation: it was held by maintenance (its delay was
        chosen, not latency)."""
        _bounded_set(self._dialled, alert_id, None)

    def dial_requested(self, call_id: str, *, alert_id: int, alert_created_at: float) -> None:
        """A call of ``alert_id`` entered the queues; :meth:`dialled` times it if it is the alert's first."""
        if alert_id not in self._dialled:
            _bounded_set(self._first_dial, call_id, (alert_id, alert_created_at))

    def dialled(self, call_id: str, *, now: float) -> None:
        pending = self._first_dial.pop(call_id, None)
        if pending is None or pending[0] in self._dialled:
            return
        alert_id, created_at = pending
        _bounded_set(self._dialled, alert_id, None)
        self.alert_to_first_dial.observe(max(0.0, now - created_at))

    def carried(self, page_id: str, provider: str) -> None:
        """``provider`` took a call or SMS (the last one to take it is the one its outcome is counted on)."""
        _bounded_set(self._carrier, page_id, provider)

    def page_finished(self, page_id: str, *, channel: str, outcome: str) -> None:
        provider = self._carrier.pop(page_id, "none")
        self._first_dial.pop(page_id, None)
        self.pages.labels(channel=channel, provider=provider, outcome=outcome).inc()

    def provider_failed(self, provider: str) -> None:
        self.provider_errors.labels(provider=provider).inc()

    def signature_refused(self, provider: str) -> Callable[[str], None]:
        """The callback a provider's webhooks call with the reason of each refusal."""
        return lambda reason: self.webhook_signature_failures.labels(provider=provider, reason=reason).inc()

    # ------------------------------------------------------------- hotline

    def hotlines(self, names: Iterable[str]) -> None:
        """Show each configured hotline's waiting callers, 0 included."""
        for name in names:
            self.hotline_callers_waiting.labels(hotline=name).set(0)

    def caller_waiting(self, call_id: str, *, hotline: str, alert_id: int, arrived_at: float,
                       gone_by: float) -> None:
        """A caller waits; ``gone_by``: when they cannot be waiting any more (counted so until then at most)."""
        if call_id not in self._waiting and len(self._waiting) < _MAX_PENDING:
            self._waiting[call_id] = _Waiting(hotline=hotline, alert_id=alert_id, arrived_at=arrived_at,
                                              gone_by=gone_by)
            self.hotline_callers_waiting.labels(hotline=hotline).inc()

    def caller_done(self, call_id: str, *, outcome: str, now: float) -> None:
        """The caller was connected, or the call ended first; counted once (the first of the two)."""
        waiting = self._waiting.pop(call_id, None)
        if waiting is None:
            return
        self.hotline_callers_waiting.labels(hotline=waiting.hotline).dec()
        self.hotline_wait.labels(outcome=outcome).observe(max(0.0, now - waiting.arrived_at))

    def hotline_alert_closed_elsewhere(self, alert_id: int) -> None:
        """Another gateway closed the caller's alert (their call's end, or an engineer's accept, reached it):
        not waiting here any more. Their wait is not timed here: how it ended is known where it ended."""
        for call_id, waiting in list(self._waiting.items()):
            if waiting.alert_id == alert_id:
                del self._waiting[call_id]
                self.hotline_callers_waiting.labels(hotline=waiting.hotline).dec()

    def forget_callers_gone(self, now: float) -> None:
        """A safety net (at each scrape): callers past the longest possible wait are not waiting any more,
        whatever was missed about them."""
        for call_id, waiting in list(self._waiting.items()):
            if waiting.gone_by <= now:
                del self._waiting[call_id]
                self.hotline_callers_waiting.labels(hotline=waiting.hotline).dec()


@dataclass(frozen=True, kw_only=True)
class _Waiting:
    hotline: str
    alert_id: int
    arrived_at: float
    gone_by: float


def _bounded_set(memory: dict[K, V], key: K, value: V) -> None:
    memory[key] = value
    while len(memory) > _MAX_PENDING:
        memory.pop(next(iter(memory)))


@dataclass(frozen=True, kw_only=True)
class ProviderStat:
    name: str
    up: bool
    consecutive_failures: int


@dataclass(frozen=True, kw_only=True)
class LinesStat:
    provider: str
    in_use: int
    capacity: int
    reserved_for_high: int
    low_waited_too_long: int


class LiveState(Collector):
    """What the gateway holds now, read at each scrape: queues, lines, providers' health.

    ``queues`` and ``lines`` return None before the gateway has started (nothing is dialling yet).
    """

    def __init__(self, *, queues: Callable[[], list[QueueStats] | None], lines: Callable[[], LinesStat | None],
                 providers: Callable[[], list[ProviderStat]]) -> None:
        self._queues = queues
        self._lines = lines
        self._providers = providers

    def collect(self) -> Iterator[Metric]:
        yield from self._queue_metrics(self._queues() or [])
        lines = self._lines()
        low = CounterMetricFamily("gateway_low_waited_too_long",
                                  "Low-priority calls dialled after waiting past dispatch.low_wait_warning.")
        in_use = GaugeMetricFamily("gateway_lines_in_use", "Calls in progress on the provider.",
                                   labels=["provider"])
        capacity = GaugeMetricFamily("gateway_lines", "The provider's capacity, and the lines reserved for high "
                                     "priority.", labels=["provider", "kind"])
        if lines is not None:
            low.add_metric([], lines.low_waited_too_long)
            in_use.add_metric([lines.provider], lines.in_use)
            capacity.add_metric([lines.provider, "capacity"], lines.capacity)
            capacity.add_metric([lines.provider, "reserved_for_high"], lines.reserved_for_high)
        yield from (low, in_use, capacity)
        up = GaugeMetricFamily(
            "gateway_provider_up", "1 while a provider is used, 0 while it is marked down after failing again and "
            "again (one probe at a time finds out whether it is back).", labels=["provider"])
        failures = GaugeMetricFamily("gateway_provider_consecutive_failures",
                                     "Failures of a provider since its last success.", labels=["provider"])
        for provider in self._providers():
            up.add_metric([provider.name], 1 if provider.up else 0)
            failures.add_metric([provider.name], provider.consecutive_failures)
        yield from (up, failures)

    @staticmethod
    def _queue_metrics(stats: list[QueueStats]) -> Iterator[Metric]:
        depth = GaugeMetricFamily("gateway_queue_depth", "Calls waiting for a line, per priority.",
                                  labels=["priority"])
        oldest = GaugeMetricFamily("gateway_queue_oldest_wait_seconds", "How long the oldest waiting call has "
                                   "waited.", labels=["priority"])
        too_long = GaugeMetricFamily("gateway_queue_waiting_too_long",
                                     "Calls waiting longer than dispatch.low_wait_warning.", labels=["priority"])
        for stat in stats:
            depth.add_metric([stat.priority], stat.depth)
            oldest.add_metric([stat.priority], stat.oldest_wait_s or 0.0)
            too_long.add_metric([stat.priority], stat.waiting_too_long)
        yield from (depth, oldest, too_long)
