"""SMS pumping (toll fraud): a leaked TV app key used to make the service text thousands of
numbers, which pay the fraudster per SMS and never pay for a package. Two guards, as Twilio
Verify's Fraud Guard has:

- SMS budgets per TV app: ``SMS_BUDGET_APP_HOUR`` and ``SMS_BUDGET_APP_DAY`` orders that send
  an SMS, counted with the order's own limits (the same Redis round trip);
- a pause on number prefixes (a phone number less its last four digits: a block of 10,000
  numbers) whose orders are not paid: the worker judges each prefix that had
  ``SMS_GUARD_MIN_SENT`` orders with an SMS in the last hour, once they are old enough to have
  been paid, and pauses it for a day when fewer than ``SMS_GUARD_MIN_CONVERSION`` percent
  were. New orders to a paused prefix answer 429 ``sms_paused``; ``flask --app app sms
  unpause PREFIX`` lifts a pause.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select

from gateway.context import Gateway
from gateway.domain.errors import RateLimited
from gateway.domain.orders import Status
from gateway.store.models import Order, TvApp
from gateway.store.redis_guards import SmsGuard
from gateway.store.redis_store import Limit

__all__ = ["Budget", "budget_limits", "judge", "lift", "number_prefix", "overview",
           "refuse_if_paused"]

log = logging.getLogger(__name__)

WINDOW_SECONDS = 3600  # the orders a prefix is judged on
GRACE_SECONDS = 600  # an order younger than this may still be paid: not judged yet
PAUSE_SECONDS = 24 * 3600
_PAID = (Status.PAID.value, Status.ACTIVATED.value)


def number_prefix(e164: str) -> str:
    return e164[:-4]


def _budgets(gw: Gateway, app_id: str) -> list[Limit]:
    return [Limit("sms_budget_exhausted", f"app:{app_id}:sms-hour",
                  gw.settings.SMS_BUDGET_APP_HOUR, 3600),
            Limit("sms_budget_exhausted", f"app:{app_id}:sms-day",
                  gw.settings.SMS_BUDGET_APP_DAY, 86400)]


def budget_limits(gw: Gateway, app_id: str | None, e164: str) -> list[Limit]:
    """The limits an order that sends an SMS to ``e164`` takes besides its own: its app's
    budgets, and the count of its number prefix (which never refuses)."""
    found = _budgets(gw, app_id) if app_id is not None else []
    if gw.settings.SMS_GUARD_MIN_SENT:
        found.append(SmsGuard.sent_limit(number_prefix(e164), WINDOW_SECONDS))
    return found


def refuse_if_paused(gw: Gateway, e164: str, now: datetime) -> None:
    """:raise RateLimited: ``sms_paused`` while the number's prefix is paused."""
    if not gw.settings.SMS_GUARD_MIN_SENT:  # the guard is off (and needs no Redis)
        return
    until = gw.sms_guard.paused_until(number_prefix(e164), now)
    if until is not None:
        raise RateLimited("SMS to numbers like this one are paused", code="sms_paused",
                          retry_after=max(1, int(until - now.timestamp())))


def judge(gw: Gateway) -> list[str]:
    """Pause the prefixes whose orders are not paid (the background worker, every few
    seconds); return those paused now."""
    settings = gw.settings
    if not settings.SMS_GUARD_MIN_SENT:
        return []
    now = gw.clock()
    recent = gw.sms_guard.recent(now - timedelta(seconds=WINDOW_SECONDS),
                                 now - timedelta(seconds=GRACE_SECONDS))
    judged = {prefix: ids for prefix, ids in recent.items()
              if len(ids) >= settings.SMS_GUARD_MIN_SENT
              and gw.sms_guard.paused_until(prefix, now) is None}
    paused = []
    for prefix, ids in judged.items():
        with gw.db.read() as session:
            paid = session.scalar(select(func.count()).select_from(Order).where(
                Order.id.in_(ids), Order.status.in_(_PAID))) or 0
        if paid * 100 < settings.SMS_GUARD_MIN_CONVERSION * len(ids):
            gw.sms_guard.pause(prefix, now.timestamp() + PAUSE_SECONDS)
            log.warning("SMS to %s… paused: %d of %d orders paid in the last hour", prefix,
                        paid, len(ids))
            paused.append(prefix)
    return paused


def lift(gw: Gateway, prefix: str) -> bool:
    """End a pause (the operator); say whether the prefix was paused."""
    lifted = gw.sms_guard.lift(prefix)
    if lifted:
        log.info("SMS to %s… no longer paused", prefix)
    return lifted


@dataclass(frozen=True)
class Budget:
    app: str
    last_hour: int
    hour_budget: int
    last_day: int
    day_budget: int


def overview(gw: Gateway) -> tuple[dict[str, datetime], list[Budget]]:
    """The paused prefixes (when each pause ends) and each TV app's budgets as used."""
    now = gw.clock()
    paused = {prefix: datetime.fromtimestamp(until, now.tzinfo)
              for prefix, until in gw.sms_guard.all_paused(now).items()}
    with gw.db.read() as session:
        tv_apps = session.execute(select(TvApp.id, TvApp.name).where(TvApp.kind == "tv")
                                  .order_by(TvApp.name)).all()
    settings = gw.settings
    budgets = []
    for app_id, name in tv_apps:
        hour, day = _budgets(gw, app_id)
        budgets.append(Budget(name, gw.limiter.used(hour, now), settings.SMS_BUDGET_APP_HOUR,
                              gw.limiter.used(day, now), settings.SMS_BUDGET_APP_DAY))
    return paused, budgets
