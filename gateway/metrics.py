"""Prometheus metrics: every metric of the service is defined here, and only here.

Counters of what the database records (orders and SMS reaching a status) count committed
changes only: the code that makes a change notes it on its SQL session (``count_order_status``,
``count_sms``), and the notes reach the counters after that session commits
(``gateway.effects``: ``count_committed`` receives them, wired into every process by
``gateway.wiring.connect``); a rollback drops them. (No savepoints are used; rolling one back
would drop the whole transaction's notes.)

Label values come from closed lists (anything else is ``other``) or, for HTTP, from the app's
URL rules, never from a path or a row's data, so their number stays small.

Under gunicorn, ``PROMETHEUS_MULTIPROC_DIR`` (set before this module is first imported) makes
each worker keep its values in files there, and ``/metrics`` adds the files up (``registry``).
The worker and SMPP processes serve their own values on ``METRICS_PORT`` (``serve``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Container, Iterable

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Metric,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session

from gateway.domain.orders import Channel, Kind, Reason, Status
from gateway.domain.sms import WAITING, SmsStatus
from gateway.effects import after_commit

__all__ = [
    "CODE_REPLY_TO_ACTIVATION", "EVENT_STREAMS_OPEN", "EVENT_STREAMS_REFUSED",
    "HTTP_REQUEST_DURATION", "ORDERS", "ORDERS_SHED", "ORDER_FAILURES",
    "COUNTED", "OVERLOADED", "QUEUE_WAIT", "SMPP_BINDS_UP", "SMPP_SUBMITS", "SMPP_THROTTLED",
    "SMPP_WINDOW_IN_USE", "SMS", "SMS_BACKLOG_AGE",
    "SmsQueueDepth", "count_committed",
    "count_order_status", "count_sms",
    "observe_request", "registry", "serve",
]

log = logging.getLogger(__name__)

ORDERS = Counter("tvpay_orders_total", "Orders that reached a status (committed changes)",
                 ["status", "channel", "kind"])
ORDER_FAILURES = Counter("tvpay_order_failures_total",
                         "Orders that ended unpaid (failed, expired or cancelled), by reason",
                         ["reason"])
SMS = Counter("tvpay_sms_total", "SMS that reached a status (committed changes); provider "
              "'none': failed before any provider took it", ["provider", "status"])
HTTP_REQUEST_DURATION = Histogram(
    "tvpay_http_request_duration_seconds",
    "Time to answer an HTTP request (to the response headers for event streams); route is "
    "the URL rule, 'unmatched' when none matched", ["method", "route", "status"])
CODE_REPLY_TO_ACTIVATION = Histogram(
    "tvpay_code_reply_to_activation_seconds",
    "From receiving an SMS code reply to the commit of the payment and activation it confirms")
SMPP_WINDOW_IN_USE = Gauge("tvpay_smpp_window_in_use",
                           "submit_sm sent to the SMSC and not answered yet, by connection",
                           ["connection"], multiprocess_mode="livesum")
SMPP_BINDS_UP = Gauge("tvpay_smpp_binds_up", "Transceiver binds up, by connection",
                      ["connection"], multiprocess_mode="livesum")
SMPP_SUBMITS = Counter("tvpay_smpp_submits_total", "submit_sm sent (parts), by connection: "
                       "its rate is the connection's TPS", ["connection"])
SMPP_THROTTLED = Counter("tvpay_smpp_throttled_total", "submit_sm the SMSC answered "
                         "ESME_RTHROTTLED or ESME_RMSGQFUL, by connection", ["connection"])
SMS_QUEUE_DEPTH = "tvpay_sms_queue_depth"  # read from SQL at scrape time: SmsQueueDepth
EVENT_STREAMS_OPEN = Gauge("tvpay_event_streams_open", "Event streams open (SSE)",
                           multiprocess_mode="livesum")
EVENT_STREAMS_REFUSED = Counter("tvpay_event_streams_refused_total",
                                "Event streams refused with 503 too_many_streams")
# Shedding new orders (gateway.admission). Each gauge shows the value any process set last: the
# SMS backlog is one fact for the whole service, and a queue is as the latest request found it.
QUEUE_WAIT = Histogram("tvpay_http_queue_wait_seconds",
                       "Time a request waited for a thread of its gunicorn worker",
                       buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                                2.5, 5.0))
OVERLOADED = Gauge("tvpay_overloaded", "1 while new orders are shed for this reason, as the "
                   "latest request (or look) of any process found", ["reason"],
                   multiprocess_mode="livemostrecent")
ORDERS_SHED = Counter("tvpay_orders_shed_total", "New orders refused with 503 overloaded before "
                      "anything was written, by reason", ["reason"])
SMS_BACKLOG_AGE = Gauge("tvpay_sms_backlog_age_seconds", "How long the oldest SMS not sent yet "
                        "has waited, as last read by any process",
                        multiprocess_mode="livemostrecent")

_ORDER_STATUSES = frozenset(Status)
_CHANNELS = frozenset(Channel)
_KINDS = frozenset(Kind)
_REASONS = frozenset(Reason)
_UNPAID_ENDS = frozenset({Status.FAILED, Status.EXPIRED, Status.CANCELLED})
_SMS_COUNTED = frozenset(SmsStatus).difference(WAITING)  # statuses on the way are not counted
_PROVIDERS = frozenset({"smpp", "twilio", "log"})
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
COUNTED = "metrics.counted"  # what a transaction counts, once it commits


def _known(value: object, allowed: Container[str]) -> str:
    return str(value) if value in allowed else "other"


# --- counting committed changes ----------------------------------------------------------------


def _note(session: Session | None, metric: Counter, labels: tuple[str, ...],
          amount: int = 1) -> None:
    if session is None or amount <= 0:  # an object in no session commits nothing
        return
    after_commit(session, COUNTED, ((metric, labels), amount))


def count_committed(notes: list[tuple[tuple[Counter, tuple[str, ...]], int]]) -> None:
    """Add a committed transaction's notes to the counters (``Database.on_commit``)."""
    for (metric, labels), amount in notes:
        metric.labels(*labels).inc(amount)


def count_order_status(session: Session, status: str, channel: str, kind: str,
                       reason: str | None) -> None:
    """Count an order's new status once ``session`` commits."""
    known = _known(status, _ORDER_STATUSES)
    _note(session, ORDERS, (known, _known(channel, _CHANNELS), _known(kind, _KINDS)))
    if known in _UNPAID_ENDS:
        _note(session, ORDER_FAILURES, (_known(reason, _REASONS),))


def count_sms(session: Session | None, provider: str | None, status: str, count: int = 1) -> None:
    """Count ``count`` SMS rows that reached ``status`` once ``session`` commits.

    Statuses on the way (queued, sending) are not counted; ``provider`` None: none took it.
    """
    if status in _SMS_COUNTED:
        label = "none" if provider is None else _known(provider, _PROVIDERS)
        _note(session, SMS, (label, str(status)), count)


def observe_request(method: str, route: str | None, status: int, seconds: float) -> None:
    HTTP_REQUEST_DURATION.labels(_known(method, _METHODS), route or "unmatched",
                                 str(status)).observe(seconds)


# --- exposing them -----------------------------------------------------------------------------


class SmsQueueDepth(Collector):
    """``tvpay_sms_queue_depth{status}`` and ``tvpay_sms_queue_age_seconds{connection}``, read
    at scrape time by ``read`` (``outbox.waiting``); left out of the scrape when ``read``
    gives None (the database did not answer)."""

    def __init__(self, read: Callable[[], tuple[dict[str, int], dict[str, float]] | None]
                 ) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        found = self._read()
        if found is None:
            return
        counts, ages = found
        family = GaugeMetricFamily(SMS_QUEUE_DEPTH, "SMS in the outbox not sent yet, in the "
                                   "whole service (queued or being sent), read from SQL",
                                   labels=["status"])
        for status in WAITING:
            family.add_metric([status], counts.get(status, 0))
        yield family
        age = GaugeMetricFamily(
            "tvpay_sms_queue_age_seconds", "Age of the oldest SMS not sent yet, by the SMPP "
            "connection it waits for ('none': not routed yet), read from SQL",
            labels=["connection"])
        for connection, seconds in sorted(ages.items()):
            age.add_metric([connection], seconds)
        yield age

    def describe(self) -> Iterable[Metric]:
        return []


class _ThisProcess(Collector):
    """The default registry (this process's values), as one collector of another registry."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()

    def describe(self) -> Iterable[Metric]:
        return []


def registry(*extra: Collector) -> CollectorRegistry:
    """What ``/metrics`` shows: the values of every gunicorn worker when
    ``PROMETHEUS_MULTIPROC_DIR`` is set, else this process's; then ``extra``."""
    found = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(found)
    else:
        found.register(_ThisProcess())
    for collector in extra:
        found.register(collector)
    return found


def serve(port: int | None) -> None:
    """Serve this process's metrics on ``port`` (``METRICS_PORT``), if one is set."""
    if port:
        start_http_server(port, addr="0.0.0.0")
        log.info("metrics at http://0.0.0.0:%s/metrics", port)
