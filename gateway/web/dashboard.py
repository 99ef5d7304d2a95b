"""The operator dashboard (``/admin``): whether new orders are shed now, the order funnel,
failures, SMS delivery by provider, orders over time and the newest orders, as tables and
server-drawn SVG charts (no script).

It takes the admin API's key (``ADMIN_API_KEY``): as ``Authorization: Bearer`` from a script,
or typed once into a sign-in form (CSRF-checked) from a browser, which then keeps a signed
cookie of its own for eight hours (``HttpOnly``, ``SameSite=Strict``, path ``/admin``). Wrong
keys are counted per client address (``TRUSTED_PROXIES``) and, past ``_WRONG_KEYS`` in 15
minutes, answered 429; the right key is never refused. Without a key configured the dashboard
is off (403).
"""

from __future__ import annotations

import logging
import math
import secrets
from typing import Any

import redis
from flask import Blueprint, Flask, Response, redirect, render_template, request
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm
from itsdangerous import BadData, URLSafeSerializer
from werkzeug.exceptions import HTTPException
from wtforms import PasswordField

from gateway import store
from gateway.backend import figures, pumping
from gateway.backend.figures import OUTCOMES, Bucket, Figures, FunnelStep, ProviderDelivery
from gateway.config import PROJECT_ROOT
from gateway.context import services
from gateway.domain.errors import InvalidInput
from gateway.messaging.health import ProviderHealth
from gateway.store.redis_store import Limit
from gateway.web import page_headers, request_log
from gateway.web.admin import admin_holder, admin_on, bearer_key, holder_still_valid

__all__ = ["bp", "register"]

log = logging.getLogger(__name__)

bp = Blueprint("dashboard", __name__, url_prefix="/admin",
               static_folder=str(PROJECT_ROOT / "wap_templates" / "static"),
               static_url_path="/static")

# No script at all, styles only from our own file, forms only to ourselves.
_SECURITY_HEADERS = page_headers.policy("default-src 'none'; style-src 'self'; form-action 'self'")
_COOKIE = "tvpay_admin"
_SIGN_IN_SECONDS = 8 * 3600
_WRONG_KEYS = 5  # per address per 15 minutes; a 16+ character key is not guessed anyway
_STORES_DOWN: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, *store.UNAVAILABLE)
_WINDOW_NAMES = {15: "15 min", 60: "1 hour", 360: "6 hours", 1440: "24 hours"}


class KeyForm(FlaskForm):  # its CSRF token lasts flask-wtf's hour
    key = PasswordField()


class SignOutForm(FlaskForm):
    """Its CSRF token lasts as long as the sign-in it ends."""

    class Meta:
        csrf_time_limit = _SIGN_IN_SECONDS


# --- views -------------------------------------------------------------------------------------


@bp.get("")
def page() -> Response:
    gw = services()
    if not admin_on():
        return _off()
    by_bearer = "Authorization" in request.headers
    if by_bearer:
        refused = _try_key(admin_holder(bearer_key()) is not None)
        if refused is not None:
            return refused
    elif not _signed_in():
        return _small_page("Sign in", form=KeyForm(formdata=None))
    try:
        minutes = figures.parse_minutes(request.args.get("minutes"))
    except InvalidInput as bad:
        return _small_page("No such window", 400, message=bad.detail, windows=_windows(None))
    found = figures.for_window(gw, minutes)
    paused, budgets = pumping.overview(gw)
    return _render("dashboard.html", figures=found, overload=gw.admission.state(),
                   paused=paused, budgets=budgets, connections=_connections(),
                   guard_min=gw.settings.SMS_GUARD_MIN_SENT,
                   guard_conversion=gw.settings.SMS_GUARD_MIN_CONVERSION,
                   windows=_windows(minutes),
                   window_name=_WINDOW_NAMES[minutes], charts=_charts(found),
                   sign_out_form=None if by_bearer else SignOutForm(), **_formats())


@bp.post("/sign-in")
def sign_in() -> ResponseReturnValue:
    if not admin_on():
        return _off()
    form = KeyForm()
    if not form.validate():
        return _small_page("Sign in", 400, form=KeyForm(formdata=None),
                           error="The form had expired. Paste the key again.")
    holder = admin_holder(str(form.key.data or ""))
    refused = _try_key(holder is not None)
    if refused is not None:
        return refused
    response = redirect("/admin", 303)
    session = {"until": services().clock().timestamp() + _SIGN_IN_SECONDS,
               "key": holder}
    response.set_cookie(_COOKIE, _serializer().dumps(session), max_age=_SIGN_IN_SECONDS,
                        path="/admin", secure=_https(), httponly=True, samesite="Strict")
    return response


@bp.post("/sign-out")
def sign_out() -> ResponseReturnValue:
    response = redirect("/admin", 303)
    if SignOutForm().validate():
        response.delete_cookie(_COOKIE, path="/admin", secure=_https(), httponly=True,
                               samesite="Strict")
    return response


# --- the key ----------------------------------------------------------------------------------


def _try_key(matches: bool) -> Response | None:
    """Count one try of the key; None if it matched, else the page that refuses it.

    The right key is never refused. Wrong keys add up per client address (behind proxies, the
    address ``TRUSTED_PROXIES`` finds): past the limit that address is answered 429 for a
    while. The key is long (``ADMIN_API_KEY`` has a minimum length), so the limit slows noise
    and tells the operator in the log; it is not what keeps the key from being guessed.
    """
    if matches:
        return None
    gw = services()
    limit = Limit("admin_key_limited", f"admin:wrong-keys:{request.remote_addr}",
                  _WRONG_KEYS, 900)
    refusal = gw.limiter.acquire([limit], secrets.token_hex(8), gw.clock())
    log.warning("wrong admin key for the dashboard from %s", request.remote_addr)
    if refusal is not None:
        response = _small_page("Sign in", 429, form=KeyForm(formdata=None),
                               error=f"Too many wrong keys from this address. Try again in "
                                     f"{math.ceil(refusal.retry_after / 60)} minutes.")
        response.headers["Retry-After"] = str(refusal.retry_after)
        return response
    response = _small_page("Sign in", 401, form=KeyForm(formdata=None),
                           error="That is not the admin key.")
    response.headers["WWW-Authenticate"] = "Bearer"
    return response


def _signed_in() -> bool:
    try:
        session = _serializer().loads(request.cookies.get(_COOKIE, ""))
    except BadData:
        return False
    until = session.get("until") if isinstance(session, dict) else None
    return (isinstance(until, float) and until > services().clock().timestamp()
            and holder_still_valid(session.get("key")))


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(services().settings.SECRET_KEY, salt="tvpay-admin-dashboard")


def _https() -> bool:
    return services().settings.PUBLIC_BASE_URL.startswith("https://")


# --- pages -------------------------------------------------------------------------------------


def _render(template: str, status: int = 200, **values: Any) -> Response:
    return Response(render_template(template, **values), status=status, mimetype="text/html")


def _small_page(title: str, status: int = 200, **values: Any) -> Response:
    """The sign-in form, or a message (dashboard off, bad window, error) in its place."""
    return _render("dashboard_sign_in.html", status, title=title, **values)


def _off() -> Response:
    return _small_page("Dashboard off", 403,
                       message="The operator dashboard is off: set ADMIN_API_KEY (16 or more "
                               "characters) and restart the service, or create an admin key "
                               "(flask --app app apps create NAME --admin), to turn it on.")


def _connections() -> list[dict[str, Any]] | None:
    """Each SMPP connection with a live bind or an SMS waiting for it, as its binds stamped
    themselves in Redis; None without SMPP."""
    gw = services()
    if "smpp" not in gw.settings.SMS_PROVIDER:
        return None
    health = ProviderHealth(gw.redis, gw.settings.REDIS_PREFIX, gw.settings.SMS_FAILOVER_AFTER)
    try:
        states = health.connection_states()
    except redis.RedisError:  # the rest of the page still shows
        states = {}
    ages = {name: age for name, age in figures.queue_ages(gw).items() if name != "none"}
    idle = dict.fromkeys(("binds", "window", "tps", "throttled"), 0.0)
    return [{"name": name, **{k: int(v) if k != "tps" else v
                             for k, v in states.get(name, idle).items()},
             "age": ages.get(name)} for name in sorted(set(states) | set(ages))]


def _windows(chosen: int | None) -> list[dict[str, Any]]:
    return [{"url": f"/admin?minutes={minutes}", "name": name, "chosen": minutes == chosen}
            for minutes, name in _WINDOW_NAMES.items()]


def _formats() -> dict[str, Any]:
    gw = services()
    texts = gw.texts_in("en")
    return {"money": texts.amount, "zone": gw.settings.TIMEZONE,
            "local": lambda moment, pattern="%Y-%m-%d %H:%M:%S":
                texts.local(moment).strftime(pattern),
            "percent": _percent}


def _percent(share: float | None) -> str:
    return "–" if share is None else f"{share:.1%}"


# --- charts: geometry for the SVG drawn by the template ----------------------------------------

CHART_WIDTH = 720
_LABEL_WIDTH = 170  # left of the bars, for the row names
_BAR_SPACE = 430  # the longest bar; its value text goes to its right
_ROW = 34


def _charts(found: Figures) -> dict[str, Any]:
    return {"funnel": _funnel_chart(found.funnel),
            "providers": _providers_chart(found.providers),
            "timeline": _timeline_chart(found.buckets)}


def _funnel_chart(steps: list[FunnelStep]) -> dict[str, Any]:
    created = steps[0].count
    rows = [{"key": step.key, "label": step.label, "y": n * _ROW + 6,
             "width": round(step.count / created * _BAR_SPACE, 1) if created else 0,
             "value": f"{step.count} ({_percent(step.share)})" if created else "0"}
            for n, step in enumerate(steps)]
    return {"rows": rows, "height": len(rows) * _ROW + 12, "x": _LABEL_WIDTH,
            "summary": "; ".join(f"{row['label']}: {row['value']}" for row in rows)}


def _provider_name(provider: ProviderDelivery) -> str:
    return provider.provider or "no provider yet"


def _providers_chart(providers: list[ProviderDelivery]) -> dict[str, Any]:
    rows = []
    for n, provider in enumerate(providers):
        rate = provider.rate
        final = provider.delivered + provider.undeliverable + provider.failed
        rows.append({"label": _provider_name(provider), "y": n * _ROW + 22,
                     "width": round((rate or 0) * _BAR_SPACE, 1), "has_rate": rate is not None,
                     "value": f"{_percent(rate)} of {final}" if rate is not None
                     else "no final answers"})
    height = len(rows) * _ROW + 28
    ticks = [{"x": _LABEL_WIDTH + _BAR_SPACE * share, "label": f"{share:.0%}"}
             for share in (0, 0.5, 1)]
    return {"rows": rows, "height": height, "x": _LABEL_WIDTH, "ticks": ticks,
            "summary": "; ".join(f"{row['label']}: {row['value']}" for row in rows)}


_PLOT_LEFT, _PLOT_TOP, _PLOT_WIDTH, _PLOT_HEIGHT = 48, 12, 656, 170


def _nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 × 10ⁿ at or above ``value``: the top of the count axis."""
    scale = 1
    while True:
        for step in (1, 2, 5):
            if step * scale >= value:
                return step * scale
        scale *= 10


def _timeline_chart(buckets: list[Bucket]) -> dict[str, Any]:
    gw = services()
    texts = gw.texts_in("en")
    top = _nice_ceiling(max((bucket.total for bucket in buckets), default=0) or 1)
    slot = _PLOT_WIDTH / len(buckets)
    width = max(1.0, slot * 0.8)
    bars, labels = [], []
    # A time under every 5, 10, 15, 30 minutes, 1, 2, 3... hours: at most 9 along the axis.
    every = next(n for n in (1, 2, 3, 6, 12, 24, 36, 72, 144) if len(buckets) <= 9 * n)
    for n, bucket in enumerate(buckets):
        x = _PLOT_LEFT + n * slot + (slot - width) / 2
        start = texts.local(bucket.start).strftime("%H:%M")
        base: float = _PLOT_TOP + _PLOT_HEIGHT
        for outcome in OUTCOMES:
            count = bucket.counts[outcome]
            if count:
                height = count / top * _PLOT_HEIGHT
                base -= height
                bars.append({"x": round(x, 2), "y": round(base, 2), "width": round(width, 2),
                             "height": round(height, 2), "outcome": outcome,
                             "title": f"{start}: {count} {outcome}"})
        if int(bucket.start.timestamp()) // figures.BUCKET_SECONDS % every == 0:
            labels.append({"x": round(x + width / 2, 2), "text": start})
    total = sum(bucket.total for bucket in buckets)
    return {"bars": bars, "labels": labels, "top": top, "left": _PLOT_LEFT,
            "plot_top": _PLOT_TOP, "plot_bottom": _PLOT_TOP + _PLOT_HEIGHT,
            "right": _PLOT_LEFT + _PLOT_WIDTH, "height": _PLOT_TOP + _PLOT_HEIGHT + 26,
            "summary": f"{total} orders in {len(buckets)} five-minute periods",
            "rows": [bucket for bucket in buckets if bucket.total]}


@bp.after_request
def secure_pages(response: Response) -> Response:
    return page_headers.apply(response, _SECURITY_HEADERS)


@bp.errorhandler(Exception)
def error_page(error: Exception) -> Response:
    """A plain page, never a traceback: what went wrong is in the log."""
    if isinstance(error, HTTPException):
        return _small_page(error.name, error.code or 500, message=error.description)
    if isinstance(error, _STORES_DOWN):
        log.error("store unavailable for the dashboard: %s", type(error).__name__)
        response = _small_page("Unavailable", 503, message="A data store is unavailable. "
                                                           "Reload in a few seconds.")
        response.headers["Retry-After"] = "5"
        return response
    log.exception("unhandled error on %s %s", request.method, request_log.route() or "-")
    return _small_page("Error", 500, message="Something went wrong; the service's log says what.")


def register(app: Flask) -> None:
    app.register_blueprint(bp)
