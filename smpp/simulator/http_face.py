"""The phones over HTTP: their inboxes as JSON or a plain page, and a way to reply."""

from __future__ import annotations

import html
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote

from smpp.simulator.phones import phone_key
from smpp.simulator.smsc import Smsc

__all__ = ["SmscHttp"]

log = logging.getLogger("smpp.simulator")  # the simulator's one logger, whichever module logs


class SmscHttp:
    """A small local HTTP face of the simulated phones.

    ``GET /phones/<phone>/messages`` (JSON), ``POST /phones/<phone>/reply`` with JSON or form
    field ``text``, and ``GET /`` a plain page listing inboxes with a reply form each.
    """

    def __init__(self, smsc: Smsc, host: str = "127.0.0.1", port: int = 0) -> None:
        self.smsc = smsc
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self.port = self._server.server_address[1]

    def start(self) -> SmscHttp:
        threading.Thread(target=self._server.serve_forever, name="smsc-http",
                         daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        smsc = self.smsc

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                log.debug("smsc http: " + format, *args)

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _json(self, status: int, data: object) -> None:
                self._answer(status, json.dumps(data, ensure_ascii=False).encode(),
                             "application/json; charset=utf-8")

            def do_GET(self) -> None:  # noqa: N802
                parts = [unquote(p) for p in self.path.split("?")[0].split("/") if p]
                if parts == []:
                    self._answer(200, _page(smsc).encode(), "text/html; charset=utf-8")
                elif len(parts) == 3 and parts[0] == "phones" and parts[2] == "messages":
                    self._json(200, smsc.inbox_json(parts[1]))
                else:
                    self._json(404, {"error": "not found"})

            def do_POST(self) -> None:  # noqa: N802
                parts = [unquote(p) for p in self.path.split("/") if p]
                length = min(int(self.headers.get("Content-Length") or 0), 10_000)
                raw = self.rfile.read(length).decode("utf-8", errors="replace")
                if not (len(parts) == 3 and parts[0] == "phones" and parts[2] == "reply"):
                    self._json(404, {"error": "not found"})
                    return
                if self.headers.get("Content-Type", "").startswith("application/json"):
                    try:
                        text = json.loads(raw).get("text")
                    except (ValueError, AttributeError):
                        text = None
                else:
                    texts = parse_qs(raw).get("text")
                    text = texts[0] if texts else None
                if not isinstance(text, str) or not text or not phone_key(parts[1]).isdigit():
                    self._json(400, {"error": "a phone number and a text are required"})
                    return
                smsc.reply(parts[1], text)
                if self.headers.get("Content-Type", "").startswith("application/json"):
                    self._json(202, {"queued": True})
                else:
                    self.send_response(303)
                    self.send_header("Location", "/")
                    self.end_headers()

        return Handler


def _page(smsc: Smsc) -> str:
    rows = []
    for phone in smsc.phones():
        items = "".join(f"<li>{html.escape(m.text)}</li>" for m in smsc.messages(phone))
        rows.append(
            f"<section><h2>+{html.escape(phone)}</h2><ul>{items}</ul>"
            f'<form method="post" action="/phones/{html.escape(phone)}/reply">'
            f'<input name="text" required><button>Reply</button></form></section>')
    return ("<!doctype html><meta charset=utf-8><title>SMSC phones</title>"
            "<h1>Simulated phones</h1>" + ("".join(rows) or "<p>No messages yet.</p>"))

