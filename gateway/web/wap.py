"""The payment page on the phone (``/w/<token>``): the link in the SMS and in the TV's QR code.

Summary → sign in to a wallet (account + payment password) → choose the wallet balance or the
linked card → pay → receipt. Every form is a plain POST with a CSRF token that redirects
(303) back to the page, so the pages work with JavaScript off and a reload never pays twice.
A sign-in lasts ``WAP_SIGN_IN_SECONDS`` for one order, kept in Redis (``SignIns``): the session
cookie holds only its random id.
"""

from __future__ import annotations

import math
import secrets
from datetime import datetime
from typing import Any, NamedTuple

from flask import Blueprint, Flask, Response, redirect, render_template, request
from flask import session as cookie
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, StringField

from gateway import phones
from gateway.backend import binding, checkout, pages, pairing
from gateway.backend.pages import Order, Package
from gateway.config import PROJECT_ROOT
from gateway.context import services
from gateway.domain.errors import Conflict, GatewayError, InvalidInput, NotFound, RateLimited
from gateway.domain.money import Money
from gateway.domain.orders import Kind, Status
from gateway.domain.texts import DEFAULT_LANGUAGE, LANGUAGES, PageTexts
from gateway.payment import wallets
from gateway.store.redis_store import Limit
from gateway.web import page_headers

__all__ = ["bp", "error_page", "register"]

bp = Blueprint("wap", __name__, url_prefix="/w",
               static_folder=str(PROJECT_ROOT / "wap_templates" / "static"),
               static_url_path="/static")

# No script at all, styles only from our own file, forms only to ourselves; framed only by our
# own pages (the phone of the demo page). The token in the address is the key to the order:
# never send it to another site.
_SECURITY_HEADERS = page_headers.policy(
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'", framed_by_us=True)
_SIGN_INS_PER_LINK = 10  # per 15 minutes: one link must not become a password oracle


def _lasting(setting: str) -> type:
    """The ``Meta`` of a form whose CSRF token lasts as long as its page: the setting named."""

    class Meta:
        @property
        def csrf_time_limit(self) -> int:
            return int(getattr(services().settings, setting))

    return Meta


class _PaymentPageForm(FlaskForm):
    """A form of a payment page: its CSRF token lasts as long as the page's link."""

    Meta = _lasting("WAP_LINK_TTL_SECONDS")


class SignInForm(_PaymentPageForm):
    account = StringField()
    password = PasswordField()


class PayForm(_PaymentPageForm):
    source = StringField()
    bind = BooleanField()


class PairForm(FlaskForm):
    """The pairing page's form: its CSRF token lasts as long as the pairing code."""

    Meta = _lasting("PAIRING_CODE_TTL_SECONDS")

    phone = StringField()
    code = StringField()


def _language() -> str:
    chosen = request.args.get("lang")
    if chosen in LANGUAGES:
        return chosen
    return request.accept_languages.best_match(LANGUAGES, default=DEFAULT_LANGUAGE)


def _page_url(page: str, action: str = "") -> str:
    """A URL of this page (``<token>`` or ``pair/<code>``) that keeps a language chosen with
    ``?lang=``."""
    chosen = request.args.get("lang")
    query = f"?lang={chosen}" if chosen in LANGUAGES else ""
    return f"/w/{page}{'/' + action if action else ''}{query}"


def _render(template: str, status: int = 200, **values: Any) -> Response:
    language = _language()
    gw = services()
    formats = gw.texts_in(language)
    other = LANGUAGES[1 - LANGUAGES.index(language)]
    html = render_template(template, t=PageTexts(language), lang=language,
                           merchant=gw.settings.MERCHANT_NAME, money=formats.amount,
                           other_language_url=f"{request.path}?lang={other}", **values)
    return Response(html, status=status, mimetype="text/html")


def error_page(status: int, code: str) -> Response:
    """A plain page for a link or request that cannot go on; never a stack trace."""
    t = PageTexts(_language())
    key = code if t.has(f"{code}_title") else {404: "not_found"}.get(status, "error")
    return _render("closed.html", status=status, title=t(f"{key}_title"), message=t(key))


# --- views -------------------------------------------------------------------------------------


@bp.get("/<token>")
def page(token: str) -> Response:
    order = checkout.order_by_token(services(), token)
    status = Status(order.status)
    if status in (Status.PAID, Status.ACTIVATED):
        return _receipt(token, order)
    if not status.pending:
        return error_page(410, order.reason if order.reason in ("expired", "cancelled")
                          else "failed")
    return _order_page(token, order, SignInForm(), PayForm())


@bp.post("/<token>/sign-in")
def sign_in(token: str) -> ResponseReturnValue:
    gw = services()
    order = checkout.order_by_token(gw, token)
    form = SignInForm()
    if not Status(order.status).pending:
        return redirect(_page_url(token), 303)
    if not form.validate():
        return _order_page(token, order, form, PayForm(), error=("form_expired", {}), status=400)
    try:
        limit = Limit("sign_in_limited", f"link:{order.id}:sign-ins", _SIGN_INS_PER_LINK, 900)
        refusal = gw.limiter.acquire([limit], secrets.token_hex(8), gw.clock())
        if refusal:
            raise RateLimited("too many sign-ins on this link", code="sign_in_limited",
                              retry_after=refusal.retry_after)
        wallet_id = wallets.sign_in(gw, form.account.data, form.password.data,
                                    client=request.remote_addr or "")
    except GatewayError as refused:
        status = 401 if refused.code == "sign_in_failed" else 400
        if isinstance(refused, RateLimited):
            status = 429
        return _order_page(token, order, form, PayForm(), status=status,
                           error=(refused.code, _error_values(refused)))
    _sign_out()  # of another order's sign-in in this browser, if any
    cookie["wap"] = gw.sign_ins.start(order.id, wallet_id, gw.clock(),
                                      gw.settings.WAP_SIGN_IN_SECONDS)
    return redirect(_page_url(token), 303)


@bp.post("/<token>/sign-out")
def sign_out(token: str) -> ResponseReturnValue:
    if SignInForm().validate():
        _sign_out()
    return redirect(_page_url(token), 303)


def _sign_out() -> None:
    services().sign_ins.end(cookie.pop("wap", None))


@bp.post("/<token>/pay")
def pay(token: str) -> ResponseReturnValue:
    gw = services()
    order = checkout.order_by_token(gw, token)
    form = PayForm()
    if not Status(order.status).pending:  # paid in another tab, or over: show which
        return redirect(_page_url(token), 303)
    if not form.validate():
        return _order_page(token, order, SignInForm(), form, error=("form_expired", {}),
                           status=400)
    wallet_id = _signed_in_wallet(order)
    if wallet_id is None:
        return _order_page(token, order, SignInForm(), form, error=("session_expired", {}),
                           status=401)
    try:
        checkout.pay_on_page(gw, order.id, wallet_id, str(form.source.data or ""),
                             bind_phone=bool(form.bind.data))
    except GatewayError as refused:
        return _order_page(token, order, SignInForm(), form, status=409,
                           error=(refused.code, _error_values(refused)))
    # The cookie forgets the sign-in; the sign-in itself lapses with WAP_SIGN_IN_SECONDS, so
    # that another tab paying the same order at once lands on the receipt too.
    cookie.pop("wap", None)
    return redirect(_page_url(token), 303)


# --- pairing a phone with a TV (the page of the TV's pairing QR code) -------------------------


@bp.get("/pair/<code>")
def pair_page(code: str) -> ResponseReturnValue:
    return _pair_page(code, PairForm())


@bp.post("/pair/<code>/phone")
def pair_phone(code: str) -> ResponseReturnValue:
    form = PairForm()
    if not form.validate():
        return _pair_page(code, form, error=("form_expired", {}), status=400)
    try:
        pairing.send_page_code(services(), code, form.phone.data)
    except (InvalidInput, RateLimited) as refused:
        return _pair_page(code, form, error=(refused.code, _error_values(refused)),
                          status=429 if isinstance(refused, RateLimited) else 400)
    return redirect(_pair_url(code), 303)


@bp.post("/pair/<code>/confirm")
def pair_confirm(code: str) -> ResponseReturnValue:
    form = PairForm()
    if not form.validate():
        return _pair_page(code, form, error=("form_expired", {}), status=400)
    try:
        device_id = pairing.confirm_on_page(services(), code, str(form.code.data or ""))
    except Conflict as refused:
        return _pair_page(code, PairForm(formdata=None), status=400,
                          error=(refused.code, _error_values(refused)))
    t = PageTexts(_language())
    return _render("closed.html", title=t("paired_title"), message=t("paired", device=device_id))


def _pair_url(code: str, action: str = "") -> str:
    return _page_url(f"pair/{code}", action)


def _pair_page(code: str, form: PairForm, *, error: tuple[str, dict[str, Any]] | None = None,
               status: int = 200) -> Response:
    row = pairing.code_for_page(services(), code)
    t = PageTexts(_language())
    waiting = row.phone if row.confirm_hash else None
    return _render("pair.html", status=status, device=row.device_id, form=form,
                   phone=phones.mask(waiting), url=lambda action="": _pair_url(code, action),
                   error=t(error[0], **error[1]) if error and t.has(error[0]) else None)


# --- what the pages show -----------------------------------------------------------------------


def _signed_in_wallet(order: Order) -> str | None:
    gw = services()
    return gw.sign_ins.wallet(cookie.get("wap"), order.id, gw.clock())


def _error_values(error: GatewayError) -> dict[str, Any]:
    values = dict(error.extra)
    if isinstance(error, RateLimited):
        values["minutes"] = math.ceil(error.retry_after / 60)
    return values


def _item(order: Order, package: Package | None, bill_description: str | None,
          t: PageTexts) -> str:
    if order.kind == Kind.BILL:
        return t("item_bill", description=bill_description or order.bill_id)
    if order.kind == Kind.RECHARGE or package is None:
        return t("item_recharge")
    return t("item_renewal", package=package.name) if order.kind == Kind.RENEWAL else package.name


def _order_page(token: str, order: Order, sign_in_form: SignInForm, pay_form: PayForm, *,
                error: tuple[str, dict[str, Any]] | None = None, status: int = 200) -> Response:
    gw = services()
    t = PageTexts(_language())
    shown = pages.order_page(gw, order, _signed_in_wallet(order))
    choices = [{"kind": s.kind, "bank": s.bank, "last4": s.last4,
                "balance": Money(s.balance, s.currency),
                "enough": s.currency == order.currency and s.balance >= order.amount}
               for s in shown.sources]
    chosen = pay_form.source.data or next((c["kind"] for c in choices if c["enough"]), None)
    return _render(
        "pay.html", status=status, token=token, order=order,
        item=_item(order, shown.package, shown.bill_description, t),
        amount=Money(order.amount, order.currency), phone=phones.mask(order.phone),
        left=_time_left(order.expires_at, gw.clock(), t), wallet=shown.wallet,
        choices=choices, chosen=chosen, may_bind=shown.may_bind, sign_in_form=sign_in_form,
        pay_form=pay_form, error=t(error[0], **error[1]) if error and t.has(error[0]) else None,
        url=lambda action="": _page_url(token, action),
    )


class TimeLeft(NamedTuple):
    """How long a payment page's link still holds, as the page shows it."""

    text: str  # "12 min left (until 14:32)", in the page's language and time zone
    until: str  # the moment it lapses, ISO 8601 with the zone's offset (``<time datetime>``)
    refresh: int  # seconds after which the page reloads itself: onto the expired page


def _time_left(expires_at: datetime | None, now: datetime, t: PageTexts) -> TimeLeft | None:
    """What the page says of its link's lifetime: true at each render (every step is a round
    trip), and the page reloads itself (``<meta http-equiv=refresh>``, no script) when it runs
    out. Only for a link that has not lapsed: a lapsed one is expired before any page shows."""
    if expires_at is None:
        return None
    local = services().texts_in(t.language).local
    seconds = max(0.0, (expires_at - now).total_seconds())
    until = local(expires_at)
    clock = until.strftime(t("time" if until.date() == local(now).date() else "datetime"))
    return TimeLeft(t("time_left", minutes=max(1, math.ceil(seconds / 60)), until=clock),
                    until.isoformat(timespec="seconds"), math.ceil(seconds) + 1)


class BindForm(_PaymentPageForm):
    code = StringField()


@bp.post("/<token>/bind")
def bind(token: str) -> ResponseReturnValue:
    """The code sent to the order's phone, typed on the receipt: binds the phone."""
    order = checkout.order_by_token(services(), token)
    if Status(order.status) not in (Status.PAID, Status.ACTIVATED):  # no receipt to bind on
        return redirect(_page_url(token), 303)
    form = BindForm()
    if not form.validate():
        return _receipt(token, order, error=("form_expired", {}), status=400)
    try:
        bound = binding.confirm(services(), order.id, str(form.code.data or ""))
    except (Conflict, NotFound) as refused:
        return _receipt(token, order, error=(refused.code, _error_values(refused)),
                        status=400)
    return _receipt(token, order, done="bind_done" if bound else "bind_taken")


def _receipt(token: str, order: Order, *, error: tuple[str, dict[str, Any]] | None = None,
             done: str | None = None, status: int = 200) -> Response:
    gw = services()
    t = PageTexts(_language())
    shown = pages.receipt(gw, order)
    card = shown.card
    paid_from = "" if not shown.paid else \
        t("card", bank=card.bank, last4=card.last4) if card else t("wallet")
    formats = gw.texts_in(t.language)
    return _render(
        "receipt.html", order=order, item=_item(order, shown.package, shown.bill_description, t),
        amount=Money(order.amount, order.currency), paid_from=paid_from,
        paid_at=formats.local(order.updated_at).strftime(t("datetime")),
        active_until=formats.local(shown.active_until).strftime(t("date"))
        if shown.active_until else None,
        binding_phone=binding.pending_phone(gw, order.id), bind_form=BindForm(formdata=None),
        error=t(error[0], **error[1]) if error and t.has(error[0]) else None,
        done=t(done) if done else None, status=status,
        url=lambda action="": _page_url(token, action),
    )


def register(app: Flask) -> None:
    app.register_blueprint(bp)
    secure = services(app).settings.PUBLIC_BASE_URL.startswith("https://")
    app.config.update(SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SECURE=secure)

    @app.after_request
    def secure_pages(response: Response) -> Response:
        if request.path.startswith("/w/"):
            page_headers.apply(response, _SECURITY_HEADERS)
        return response
