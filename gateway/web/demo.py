"""The reference TV app (``/tv``) and, in ``python app.py``, the demo page (``/demo``).

The TV app is a static page and script that use only the public ``/api/v1``: the same app runs
against a production deployment. The demo page shows it beside a phone: the inbox of a number
on the built-in SMSC, a reply box that sends a mobile-originated SMS over SMPP, and the payment
links opened inside the phone. The demo exists only where ``enable`` gave it an SMSC.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    jsonify,
    render_template,
    request,
)

from gateway import phones
from gateway.backend import apps, catalog, seed
from gateway.context import Gateway, services
from gateway.domain.errors import Conflict, InvalidInput
from gateway.domain.money import Money
from gateway.payment import ledger
from gateway.store.models import Card
from gateway.web import page_headers

__all__ = ["bp", "enable", "enabled", "new_key", "register"]

bp = Blueprint("demo", __name__)



class Phones(Protocol):
    """The simulated phones the demo shows: the built-in SMSC's, given by the local run."""

    def inbox_json(self, phone: str) -> dict[str, Any]: ...

    def reply(self, phone: str, text: str, *, to: str) -> None: ...


_SMSC = "demo.smsc"
_KEY = "demo.api_key"
_DEMO_APP = "demo"
_MAX_REPLY = 700  # characters: ten concatenated UCS-2 parts
_UNBOUND_EXAMPLE = "13600136000"
# Scripts and styles from our own files only; the phone frame shows our own payment pages.
_SECURITY_HEADERS = page_headers.policy(
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
    "connect-src 'self'; frame-src 'self'; form-action 'self'", framed_by_us=True,
    referrer="same-origin")


def enable(app: Flask, smsc: Phones, api_key: str) -> None:
    """Show the demo page, with the phones of this built-in SMSC, its TV calling with
    ``api_key``."""
    app.extensions[_SMSC] = smsc
    app.extensions[_KEY] = api_key


def new_key(app: Flask) -> str:
    """A new key of the TV app ``demo`` (made at its first start), for this run's demo page."""
    gw: Gateway = services(app)
    with gw.db.transaction() as session:
        try:
            return apps.create(session, _DEMO_APP, apps.TV, gw.clock())
        except Conflict:
            return apps.add_key(session, _DEMO_APP, gw.clock())


def enabled(app: Flask) -> bool:
    return _SMSC in app.extensions


def _smsc() -> Phones:
    smsc = current_app.extensions.get(_SMSC)
    if smsc is None:
        abort(404)
    return smsc


@dataclass(frozen=True)
class DemoWallet:
    wallet_id: str
    owner: str
    phones: list[str]  # national numbers, as a viewer types them
    password: str
    balance: str
    card: str | None
    outcome: str  # what ordering the cheapest package with its phone does


def _money(amount: int, currency: str) -> str:
    return f"{Money(amount, currency).decimal_text()} {currency}"


def _demo_wallets() -> list[DemoWallet]:
    """The demo file's wallets with what they hold now (the demo spends them)."""
    gw = services()
    found, e164 = seed.parse_seed(seed.DEMO_FILE.read_text(encoding="utf-8"),
                                  gw.settings.PHONE_COUNTRIES)
    rows = []
    with gw.db.read() as session:
        packages = catalog.list_packages(session)
        cheapest = packages[0] if packages else None
        for wallet in found.wallets:
            balance = ledger.balance(session, ledger.wallet_account(wallet.id))
            card = session.get(Card, wallet.id)
            card_balance = ledger.balance(session, ledger.card_account(wallet.id)) if card else 0
            if not wallet.phones:
                outcome = "no phone bound: sign in on the payment page of an unbound number"
            elif cheapest is None or balance >= cheapest.price:
                outcome = "the wallet pays"
            elif card_balance >= cheapest.price:
                outcome = "the wallet is short: the linked card pays"
            else:
                outcome = "too little everywhere: insufficient_funds"
            rows.append(DemoWallet(
                wallet.id, wallet.owner,
                [phones.national(e164[raw]) for raw in wallet.phones], wallet.password,
                _money(balance, wallet.currency),
                f"{card.bank} ·{card.last4}: {_money(card_balance, wallet.currency)}"
                if card else None, outcome))
    return rows


@bp.get("/demo")
def demo_page() -> str:
    _smsc()
    wallets = _demo_wallets()
    numbers = [number for wallet in wallets for number in wallet.phones] + [_UNBOUND_EXAMPLE]
    return render_template("demo.html", wallets=wallets, numbers=numbers,
                           unbound=_UNBOUND_EXAMPLE, api_key=current_app.extensions[_KEY],
                           **_tv_config())


@bp.get("/tv")
def tv_page() -> str:
    return render_template("tv.html", **_tv_config())


def _tv_config() -> dict[str, Any]:
    settings = services().settings
    language = request.args.get("lang", settings.SMS_LANGUAGE)
    return {"language": language if language in ("zh-CN", "en") else settings.SMS_LANGUAGE,
            "public_base_url": settings.PUBLIC_BASE_URL}


def _phone_key(raw: str) -> str:
    """The SMSC's key of a number the viewer typed: its E.164 digits."""
    return phones.parse(raw, services().settings.PHONE_COUNTRIES).lstrip("+")


@bp.get("/demo/phones/<raw>/messages")
def inbox(raw: str) -> Response:
    return jsonify(_smsc().inbox_json(_phone_key(raw)))


@bp.post("/demo/phones/<raw>/reply")
def send_reply(raw: str) -> tuple[Response, int]:
    """The phone texts the service number: a ``deliver_sm`` from the SMSC, over SMPP."""
    smsc = _smsc()
    phone = _phone_key(raw)
    text = (request.get_json(silent=True) or {}).get("text") if request.is_json else None
    if not isinstance(text, str) or not text.strip() or len(text) > _MAX_REPLY:
        raise InvalidInput(f"text must be 1-{_MAX_REPLY} characters", code="invalid_text")
    smsc.reply(phone, text.strip(), to=services().settings.SMS_SERVICE_NUMBER)
    return jsonify(queued=True), 202


def register(app: Flask) -> None:
    app.register_blueprint(bp)

    @app.after_request
    def secure_pages(response: Response) -> Response:
        if request.endpoint in ("demo.demo_page", "demo.tv_page"):
            page_headers.apply(response, _SECURITY_HEADERS)
        return response

