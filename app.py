"""WSGI entry point (``gunicorn app:app``) and the one-command local run (``python app.py``).

The local run is the one place that wires the whole service into one process on embedded
defaults: the web app, the background worker, and over SMPP a built-in SMSC whose phones the
demo page shows (the web layer itself knows no SMSC).
"""

from __future__ import annotations

import signal
import socket
import threading

from flask import Flask
from sqlalchemy.engine import make_url
from werkzeug.serving import make_server

from gateway import create_app, migrate
from gateway.backend import catalog, seed
from gateway.background import Worker
from gateway.config import Settings
from gateway.context import services
from gateway.web import demo
from smpp.simulator import smsc_address
from smpp.worker import SmppWorker

app = create_app()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _refuse_a_taken_port(port: int) -> None:
    """Stop before anything is printed or started when another server holds the port."""
    probe = socket.socket()
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will bind
    try:
        probe.bind(("127.0.0.1", port))
    except OSError:
        raise SystemExit(f"port {port} on 127.0.0.1 is in use (another `python app.py`?): stop "
                         f"it, or choose another port: PORT={port + 1} python app.py") from None
    finally:
        probe.close()


def _where_data_lives(settings: Settings) -> str:
    database = make_url(settings.DATABASE_URL)
    stores = [database.database if database.get_backend_name() == "sqlite"
              else database.render_as_string(hide_password=True)]
    if settings.REDIS_URL:
        stores.append(make_url(settings.REDIS_URL).render_as_string(hide_password=True))
    else:
        stores.append(f"{settings.VAR_DIR / 'redis.db'} (a private Redis)")
    return ", ".join(str(store) for store in stores)


def banner(settings: Settings, keys: demo.LocalKeys, demo_on: bool, loaded: str) -> str:
    """What a local start prints once it serves: where to go, with which keys, and the data."""
    base = f"http://127.0.0.1:{settings.PORT}"
    lines = [f"TV Pay Gateway: {base}/{'demo' if demo_on else ''}", "",
             f"  TV app alone   {base}/tv?key={keys.tv}",
             f"  dashboard      {base}/admin  (admin key: {keys.admin})",
             f"  API reference  {base}/docs",
             f"  data           {_where_data_lives(settings)}{loaded}",
             "", "Ctrl-C stops it. Logs follow.", ""]
    return "\n".join(lines)


def serve(app: Flask) -> None:
    """Migrate, load the demo data into an empty database, start the workers, then serve."""
    gw = services(app)
    _refuse_a_taken_port(gw.settings.PORT)
    if gw.settings.SMPP_CONFIG is not None:
        raise SystemExit("SMPP_CONFIG is for production's `python -m smpp` and `flask --app app "
                         "worker`: the local run keeps one SMPP connection (SMPP_HOST, or its "
                         "built-in SMSC). Unset SMPP_CONFIG to run it.")
    with migrate.quiet():
        migrate.upgrade(gw.settings.DATABASE_URL)
    loaded = ""
    with gw.db.transaction() as session:
        if not catalog.list_packages(session):
            seed.load_seed(session, seed.DEMO_FILE, gw.settings.PHONE_COUNTRIES, gw.clock())
            loaded = f"; the demo data of examples/{seed.DEMO_FILE.name} loaded"
    keys = demo.local_keys(app)
    worker = Worker(gw)
    background = [(threading.Thread(target=worker.run, name="worker"), worker.stopping.set)]
    smpp: SmppWorker | None = None
    if "smpp" in gw.settings.SMS_PROVIDER:
        host, smpp_port, smsc = smsc_address(gw.settings)
        if smsc is not None:
            demo.enable(app, smsc, keys)
        smpp = SmppWorker(gw, host=host, port=smpp_port)
        background.append((threading.Thread(target=smpp.run, name="smpp"), smpp.stop))
    server = make_server("127.0.0.1", gw.settings.PORT, app, threaded=True)
    for thread, _stop in background:
        thread.start()
    try:
        signal.signal(signal.SIGTERM, _interrupt)  # stop as cleanly on SIGTERM as on Ctrl-C
        if smpp is not None:  # the banner after the start's log lines, not among them
            smpp.bound.wait(timeout=5)
        # one write: under load a log line to stderr, which shares the terminal (or file),
        # could otherwise land inside the banner
        print(banner(gw.settings, keys, demo.enabled(app), loaded), end="\n", flush=True)
        server.serve_forever()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: a normal stop
        pass
    finally:  # let the workers finish their round and unbind before exiting
        server.server_close()
        for _thread, stop in background:
            stop()
        for thread, _stop in background:
            thread.join(timeout=20)


if __name__ == "__main__":
    serve(app)
