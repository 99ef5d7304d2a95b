"""``python -m smpp``: run the SMPP worker, bound to SMPP_HOST (or to a built-in SMSC)."""

from __future__ import annotations

import logging
import signal

from gateway.config import load_settings
from gateway.context import Gateway
from gateway.logs import configure_logging
from smpp.simulator import smsc_address
from smpp.worker import SmppWorker

log = logging.getLogger("smpp")


def main() -> None:
    configure_logging()
    gw = Gateway(load_settings())
    host, port, phones = smsc_address(gw.settings)
    if phones:
        log.warning("no SMPP_HOST: using a built-in SMSC; its phones are at %s", phones)
    worker = SmppWorker(gw, host=host, port=port)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: worker.stop())
    worker.run()


if __name__ == "__main__":
    main()
