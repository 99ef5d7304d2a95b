"""The use cases of an order: start it, confirm it by code, pay it on its page, read, retry,
cancel and expire it.

Each use case is one SQL transaction in which the order's status, any money that moves with it
(``gateway.payment.ledger``) and any SMS it causes (``gateway.store.outbox``) change together.
The rules that decide come from ``gateway.domain`` (which account pays, what a code reply does,
when an order lapses); orders changed in hand are written through ``gateway.store.orders``.
Every entry point (TV API, payment pages, inbound SMS, CLI, worker) calls these functions and
nothing below them:

    start     start_order, start_device_order, payment_url, validate_device_id
    confirm   confirm_codes, code_sms_undeliverable
    page      order_by_token, pay_on_page
    manage    get_order, retry_order, cancel_order, expire_lapsed
    lifecycle moving an order along (shared by the above), looks_like_order_id
    codes     an order's one-time code
"""

from __future__ import annotations

from gateway.backend.checkout.confirm import code_sms_undeliverable, confirm_codes
from gateway.backend.checkout.lifecycle import looks_like_order_id
from gateway.backend.checkout.manage import cancel_order, expire_lapsed, get_order, retry_order
from gateway.backend.checkout.page import order_by_token, pay_on_page
from gateway.backend.checkout.start import (
    payment_url,
    start_device_order,
    start_order,
    validate_device_id,
)

__all__ = [
    "cancel_order", "code_sms_undeliverable", "confirm_codes", "expire_lapsed", "get_order",
    "looks_like_order_id", "order_by_token", "pay_on_page", "payment_url", "retry_order",
    "start_device_order", "start_order", "validate_device_id",
]
