"""Operations endpoints: ``/healthz`` (the process answers), ``/readyz`` (its database, Redis and
an SMS provider answer) and ``/metrics`` (Prometheus; requests are timed by ``request_log``).

Each readiness check runs in a thread of its own and is waited for ``CHECK_TIMEOUT`` seconds at
most; the checks run side by side, so ``/readyz`` answers within about that, whatever hangs. A
check still stuck from an earlier probe is waited on again rather than started once more, so a
dead server holds one thread per check, not one per probe. ``/readyz`` answers its own JSON,
never a problem document, and its details name the place and the failure, never a secret.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

import redis
import requests
from flask import Response, jsonify, request
from flask_openapi3 import OpenAPI, Tag
from prometheus_client.exposition import choose_encoder
from twilio.base.exceptions import TwilioException, TwilioRestException

from gateway import metrics
from gateway.admission import Overload
from gateway.context import Gateway, services
from gateway.messaging import twilio_sms
from gateway.messaging.health import ProviderHealth
from gateway.store import outbox
from gateway.web.schemas import NO_STORE, Health, answer

__all__ = ["CHECK_TIMEOUT", "TWILIO_CACHE_SECONDS", "register"]

log = logging.getLogger(__name__)

CHECK_TIMEOUT = 2.0  # seconds a readiness check (or the SQL of a scrape) is waited for
TWILIO_CACHE_SECONDS = 60.0  # a reachable Twilio account is not asked again for this long
_DETAIL_LENGTH = 300
_CREDENTIALS_IN_URL = re.compile(r"(?<=://)[^/@\s]+@")


OPERATIONS = Tag(name="Operations",
                 description="Liveness, readiness and metrics for the platform that runs the "
                             "service.")


def register(app: OpenAPI) -> None:
    """Add ``/healthz``, ``/readyz`` and ``/metrics`` to ``app``."""
    gw: Gateway = services(app)
    readiness = _Readiness(gw)
    queue_depth = _Probe(lambda: outbox.waiting(gw.db, gw.clock()))
    overload = _Probe(gw.admission.state)  # it reads SQL: waited on as a check is

    @app.get("/healthz", tags=[OPERATIONS], operation_id="healthz", summary="Liveness",
             description="The process answers. It checks nothing else (that is `/readyz`).",
             responses={200: answer(Health, 'Alive: `{"status": "ok"}`.', cache=NO_STORE)})
    def healthz() -> Response:
        return _no_store(jsonify(status="ok"))

    @app.get("/readyz", tags=[OPERATIONS], operation_id="readyz", summary="Readiness",
             description="""Whether the process can serve now: the database, Redis and an SMS
provider answer. The checks run side by side, each waited for 2 s at most. `ready` with 200, or
`not_ready` with 503 and, in each failed check, what failed (never a secret). `overloaded`: whether
this process sheds new orders now (`503 overloaded`); an overloaded service is still ready, as it
answers at once. `overload` says why (`reasons`) with the figures and their bounds. Always this
JSON, never a problem document.""",
             responses={200: answer(Health, "Ready.", cache=NO_STORE),
                        503: answer(Health, "Not ready; `checks` says what failed.",
                                    cache=NO_STORE)})
    def readyz() -> Response:
        deadline = time.monotonic() + CHECK_TIMEOUT
        looking = overload.start()  # beside the checks, and waited for as long
        ready, checks = readiness.check()
        found = _overload(looking, deadline)
        response = jsonify(status="ready" if ready else "not_ready", checks=checks,
                           overloaded=found.overloaded, overload=asdict(found))
        response.status_code = 200 if ready else 503
        return _no_store(response)

    @app.get("/metrics", tags=[OPERATIONS], operation_id="metrics",
             summary="Prometheus metrics",
             description="The Prometheus text exposition format, or OpenMetrics when the "
                         "scraper's `Accept` asks for `application/openmetrics-text`.",
             responses={200: {"description": "The metrics.", "content": {
                 "text/plain": {"schema": {"type": "string",
                                           "examples": ["# HELP ...\n# TYPE ...\n"]}},
                 "application/openmetrics-text": {"schema": {
                     "type": "string", "examples": ["# HELP ...\n# TYPE ...\n# EOF\n"]}}}}})
    def metrics_page() -> Response:
        def waiting() -> tuple[dict[str, int], dict[str, float]] | None:
            outcome = queue_depth.wait(time.monotonic() + CHECK_TIMEOUT)
            return None if outcome is None or outcome.error else outcome.value

        _overload(overload.start(), time.monotonic() + CHECK_TIMEOUT)  # fresh gauges
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = encode(metrics.registry(metrics.SmsQueueDepth(waiting)))
        return Response(body, content_type=content_type)

    def _overload(looking: Future[_Outcome], deadline: float) -> Overload:
        """The state ``looking`` found by ``deadline``, else the one the last look found."""
        outcome = _result(looking, deadline)
        if outcome is None or outcome.error is not None:
            return gw.admission.state(read=False)
        found: Overload = outcome.value
        return found


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


# --- running checks with a deadline ------------------------------------------------------------


@dataclass(frozen=True)
class _Outcome:
    value: Any
    error: BaseException | None
    ms: float


class _Probe:
    """Runs ``call`` in a thread of its own, one run at a time."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self._call = call
        self._lock = threading.Lock()
        self._running: Future[_Outcome] | None = None

    def start(self) -> Future[_Outcome]:
        """The run in progress, or a new one when none is."""
        with self._lock:
            if self._running is None or self._running.done():
                self._running = Future()
                threading.Thread(target=self._run, args=(self._running,), name="ops-check",
                                 daemon=True).start()
            return self._running

    def wait(self, deadline: float) -> _Outcome | None:
        """Start (or join) a run and wait for it until ``deadline``; None: no answer by then."""
        return _result(self.start(), deadline)

    def _run(self, future: Future[_Outcome]) -> None:
        started = time.perf_counter()
        try:
            value, error = self._call(), None
        except Exception as exc:  # the check's failure is its answer
            value, error = None, exc
        future.set_result(_Outcome(value, error, round((time.perf_counter() - started) * 1000, 1)))


def _result(future: Future[_Outcome], deadline: float) -> _Outcome | None:
    try:
        return future.result(timeout=max(0.0, deadline - time.monotonic()))
    except TimeoutError:
        return None


# --- the checks --------------------------------------------------------------------------------


class _Readiness:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self._twilio_ok_until = 0.0  # monotonic time until which a reached account counts
        self._was_ready = True
        self._providers = gw.settings.SMS_PROVIDER
        provider_checks = {"smpp": self._smpp, "twilio": self._twilio, "log": self._log}
        self._probes = {"database": _Probe(self._database), "redis": _Probe(self._redis),
                        **{f"sms:{name}": _Probe(provider_checks[name])
                           for name in self._providers}}

    def check(self) -> tuple[bool, dict[str, Any]]:
        """Run every check side by side; say whether all passed, and each one's state."""
        started = time.monotonic()
        deadline = started + CHECK_TIMEOUT
        runs = {name: probe.start() for name, probe in self._probes.items()}
        states = {name: self._state(_result(run, deadline), started)
                  for name, run in runs.items()}
        providers = {name: states.pop(f"sms:{name}") for name in self._providers}
        sms: dict[str, Any] = {"ok": any(p["ok"] for p in providers.values()),
                               "providers": providers}
        if not sms["ok"]:
            sms["detail"] = "no SMS provider can send: " + "; ".join(
                f"{name}: {p['detail']}" for name, p in providers.items())
        checks = {**states, "sms": sms}
        ready = all(c["ok"] for c in checks.values())
        self._log_change(ready, checks)
        return ready, checks

    def _state(self, outcome: _Outcome | None, started: float) -> dict[str, Any]:
        if outcome is None:
            return {"ok": False, "ms": round((time.monotonic() - started) * 1000, 1),
                    "detail": f"no answer within {CHECK_TIMEOUT:g} s"}
        if outcome.error is not None:
            return {"ok": False, "ms": outcome.ms, "detail": self._describe(outcome.error)}
        state = {"ok": True, "ms": outcome.ms}
        if outcome.value is not None:  # (ok, detail[, more]) from an SMS provider's check
            state["ok"], state["detail"], *more = outcome.value
            for extra in more:
                state.update(extra)
        return state

    def _log_change(self, ready: bool, checks: dict[str, Any]) -> None:
        if ready != self._was_ready:
            failed = ", ".join(f"{name}: {c['detail']}" for name, c in checks.items()
                               if not c["ok"])
            if ready:
                log.info("ready again")
            else:
                log.warning("not ready: %s", failed)
        self._was_ready = ready

    def _database(self) -> None:
        self.gw.db.ping()

    def _redis(self) -> None:
        self.gw.redis.ping()

    def _smpp(self) -> tuple[bool, str, dict[str, Any]]:
        settings = self.gw.settings
        health = ProviderHealth(self.gw.redis, settings.REDIS_PREFIX, settings.SMS_FAILOVER_AFTER)
        states = health.connection_states()
        connections = {"connections": {name: {
            "binds": int(state["binds"]), "window_in_use": int(state["window"]),
            "tps": state["tps"], "throttled": int(state["throttled"])}
            for name, state in sorted(states.items())}}
        if states:
            return True, "bound: " + ", ".join(
                f"{name} {int(state['binds'])} bind{'s' * (state['binds'] != 1)}"
                for name, state in sorted(states.items())), connections
        return False, (f"no SMPP worker has stamped a bind in the last "
                       f"{settings.SMS_FAILOVER_AFTER} s (is python -m smpp running and bound?)"
                       ), connections

    def _twilio(self) -> tuple[bool, str]:
        settings = self.gw.settings
        if not (settings.TWILIO_ACCOUNT_SID and settings.TWILIO_AUTH_TOKEN):
            return False, "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are not set"
        left = self._twilio_ok_until - time.monotonic()
        if left > 0:
            return True, f"account active (checked {TWILIO_CACHE_SECONDS - left:.0f} s ago)"
        status = twilio_sms.account_status(settings, CHECK_TIMEOUT)
        if status != "active":
            return False, f"the Twilio account is {status}"
        self._twilio_ok_until = time.monotonic() + TWILIO_CACHE_SECONDS
        return True, "account active"

    @staticmethod
    def _log() -> tuple[bool, str]:
        return True, "messages are logged, not sent"

    def _describe(self, error: BaseException) -> str:
        """What failed, for an on-call engineer: the place and the error, without secrets."""
        settings = self.gw.settings
        database = self.gw.db.describe_error(error)
        if database is not None:
            what = database
        elif isinstance(error, redis.RedisError):
            what = f"Redis: {error}"
        elif isinstance(error, TwilioRestException):
            refused = " (credentials refused)" if error.status in (401, 403) else ""
            what = f"Twilio answered HTTP {error.status}, error {error.code}{refused}"
        elif isinstance(error, TwilioException | requests.RequestException):
            where = urlsplit(settings.TWILIO_API_BASE)
            what = f"Twilio API at {where.hostname} unreachable: {type(error).__name__}"
        else:
            what = f"{type(error).__name__}: {error}"
        return _scrub((what.splitlines() or [""])[0], _secrets(self.gw))


def _secrets(gw: Gateway) -> list[str]:
    s = gw.settings
    found = [s.SECRET_KEY, s.TWILIO_AUTH_TOKEN, s.SMPP_PASSWORD, s.INBOUND_SMS_SECRET,
             s.ADMIN_API_KEY, s.BOSS_WEBHOOK_SECRET, gw.db.password,
             urlsplit(s.REDIS_URL or "").password]
    return [str(secret) for secret in found if secret]


def _scrub(detail: str, secrets: list[str]) -> str:
    """``detail`` without credentials in URLs or any configured secret, and not too long."""
    detail = _CREDENTIALS_IN_URL.sub("***@", detail)
    for secret in secrets:
        detail = detail.replace(secret, "***")
    return detail[:_DETAIL_LENGTH]
