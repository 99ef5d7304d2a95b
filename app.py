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

from gateway import create_app, migrate
from gateway.backend import catalog, seed
from gateway.background import Worker
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


def serve(app: Flask) -> None:
    """Migrate, load the demo data into an empty database, start the workers, then serve."""
    gw = services(app)
    _refuse_a_taken_port(gw.settings.PORT)
    migrate.upgrade(gw.settings.DATABASE_URL)
    with gw.db.transaction() as session:
        if not catalog.list_packages(session):
            report = seed.load_seed(session, seed.DEMO_FILE, gw.settings.PHONE_COUNTRIES,
                                    gw.clock())
            print(f"loaded demo data from {seed.DEMO_FILE.name}: {report}")
    worker = Worker(gw)
    background = [(threading.Thread(target=worker.run, name="worker"), worker.stopping.set)]
    if "smpp" in gw.settings.SMS_PROVIDER:
        host, smpp_port, smsc = smsc_address(gw.settings)
        if smsc is not None:
            demo.enable(app, smsc, demo.new_key(app))
        smpp = SmppWorker(gw, host=host, port=smpp_port)
        background.append((threading.Thread(target=smpp.run, name="smpp"), smpp.stop))
    for thread, _stop in background:
        thread.start()
    port = gw.settings.PORT
    page = "demo" if demo.enabled(app) else ""
    try:
        signal.signal(signal.SIGTERM, _interrupt)  # stop as cleanly on SIGTERM as on Ctrl-C
        # one write, the newline with it: under load a log line to stderr, which shares the
        # terminal (or file), could otherwise land between the URL and its end
        print(f"TV Pay Gateway: http://127.0.0.1:{port}/{page}\n", end="", flush=True)
        app.run(host="127.0.0.1", port=port, threaded=True, use_reloader=False)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM before the server caught it: a normal stop
        pass
    finally:  # Ctrl-C: let the workers finish their round and unbind before exiting
        for _thread, stop in background:
            stop()
        for thread, _stop in background:
            thread.join(timeout=20)


if __name__ == "__main__":
    serve(app)
