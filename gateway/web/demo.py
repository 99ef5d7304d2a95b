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
from gateway.backend import apps, pages
from gateway.context import services
from gateway.domain.errors import InvalidInput
from gateway.web import page_headers

__all__ = ["LocalKeys", "bp", "enable", "enabled", "local_keys", "register"]

bp = Blueprint("demo", __name__)


class Phones(Protocol):
    """The simulated phones the demo shows: the built-in SMSC's, given by the local run."""

    def inbox_json(self, phone: str) -> dict[str, Any]: ...

    def reply(self, phone: str, text: str, *, to: str) -> None: ...


_SMSC = "demo.smsc"
_KEYS = "demo.keys"
_DEMO_APP, _ADMIN_APP = "demo", "local-admin"
_MAX_REPLY = 700  # characters: ten concatenated UCS-2 parts
_UNBOUND_EXAMPLE = "13600136000"
_PHONE_TEXTS = {
    "zh-CN": {"phone": "手机", "messages": "短信", "reply": "发给服务号的短信",
              "placeholder": "短信内容", "send": "发送", "me": "我", "browser": "手机浏览器"},
    "en": {"phone": "Phone", "messages": "Messages", "reply": "Text to the service",
           "placeholder": "Text message", "send": "Send", "me": "me",
           "browser": "Phone browser"},
}
# Scripts and styles from our own files only; the phone frame shows our own payment pages.
_SECURITY_HEADERS = page_headers.policy(
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
    "connect-src 'self'; frame-src 'self'; form-action 'self'", framed_by_us=True,
    referrer="same-origin")


@dataclass(frozen=True)
class LocalKeys:
    """The keys a local run makes at each start and shows: the demo TV's and the dashboard's."""

    tv: str  # of the TV app ``demo``
    admin: str  # of the admin app ``local-admin``


def local_keys(app: Flask) -> LocalKeys:
    """New keys of the apps ``demo`` (TV) and ``local-admin`` (made at the first start)."""
    gw = services(app)
    return LocalKeys(tv=pages.demo_key(gw, _DEMO_APP),
                     admin=pages.demo_key(gw, _ADMIN_APP, apps.ADMIN))


def enable(app: Flask, smsc: Phones, keys: LocalKeys) -> None:
    """Show the demo page, with the phones of this built-in SMSC, its TV calling with
    ``keys.tv`` and its dashboard link naming ``keys.admin``."""
    app.extensions[_SMSC] = smsc
    app.extensions[_KEYS] = keys


def enabled(app: Flask) -> bool:
    return _SMSC in app.extensions


def _smsc() -> Phones:
    smsc = current_app.extensions.get(_SMSC)
    if smsc is None:
        abort(404)
    return smsc


@bp.get("/demo")
def demo_page() -> str:
    _smsc()
    wallets = pages.demo_wallets(services())
    numbers = [number for wallet in wallets for number in wallet.phones] + [_UNBOUND_EXAMPLE]
    # The phone reads the service's SMS, all in SMS_LANGUAGE: its own labels follow it.
    sms_language = services().settings.SMS_LANGUAGE
    return render_template("demo.html", wallets=wallets, numbers=numbers,
                           unbound=_UNBOUND_EXAMPLE, keys=current_app.extensions[_KEYS],
                           sms_language=sms_language, phone_texts=_PHONE_TEXTS[sms_language],
                           **_tv_config())


@bp.get("/tv")
def tv_page() -> str:
    return render_template("tv.html", **_tv_config())


def _tv_config() -> dict[str, Any]:
    """The TV app's language (``?lang=``, or ``SMS_LANGUAGE``) and the service's TIMEZONE, in
    which it shows dates as the SMS and its status texts do."""
    settings = services().settings
    language = request.args.get("lang", settings.SMS_LANGUAGE)
    return {"language": language if language in ("zh-CN", "en") else settings.SMS_LANGUAGE,
            "time_zone": settings.TIMEZONE, "public_base_url": settings.PUBLIC_BASE_URL}


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

