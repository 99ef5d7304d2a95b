"""``python -m smpp``: run the SMPP worker, bound to SMPP_HOST (or to a built-in SMSC)."""

from __future__ import annotations

import logging
import signal

from gateway import metrics
from gateway.config import ConfigError, load_settings, refuse_local_defaults
from gateway.logs import configure_logging
from gateway.wiring import connect
from smpp.simulator import SmscHttp, smsc_address
from smpp.worker import SmppWorker

log = logging.getLogger("smpp")


def main() -> None:
    configure_logging()
    try:
        settings = load_settings()
        refuse_local_defaults(settings)
    except ConfigError as exc:
        raise SystemExit(f"TV Pay Gateway will not start: {exc}") from None
    gw = connect(settings)
    host, port, smsc = smsc_address(gw.settings)
    if smsc is not None:
        phones = SmscHttp(smsc).start()
        log.warning("no SMPP_HOST: using a built-in SMSC; its phones are at "
                    "http://127.0.0.1:%d/", phones.port)
    metrics.serve(gw.settings.METRICS_PORT)
    worker = SmppWorker(gw, host=host, port=port)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: worker.stop())
    worker.run()


if __name__ == "__main__":
    main()
