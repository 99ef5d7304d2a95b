"""``python -m smpp.simulator``: run the built-in SMSC and its phones' HTTP face."""

from __future__ import annotations

import argparse
import contextlib
import logging
import time

from smpp.simulator.http_face import SmscHttp
from smpp.simulator.phones import code_of
from smpp.simulator.smsc import Smsc


def main() -> None:
    # "simulator.py": the name its usage and errors showed when the simulator was one module
    parser = argparse.ArgumentParser(prog="simulator.py",
                                     description="Run the built-in SMSC simulator.")
    parser.add_argument("--port", type=int, default=2775)
    parser.add_argument("--http-port", type=int, default=2776)
    parser.add_argument("--system-id", default="tvpay")
    parser.add_argument("--password", default="secret")
    parser.add_argument("--no-receipts", action="store_true",
                        help="never send delivery receipts")
    parser.add_argument("--auto-reply-codes", type=float, metavar="SECONDS",
                        help="phones reply to each code SMS with its code, SECONDS later")
    parser.add_argument("--redeliver-after", type=float, default=2.0, metavar="SECONDS",
                        help="offer a reply or receipt again when not acknowledged by then")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    smsc = Smsc(port=args.port, system_id=args.system_id, password=args.password,
                redeliver_after=args.redeliver_after).start()
    smsc.receipts_withheld = args.no_receipts
    if args.auto_reply_codes is not None:
        smsc.auto_reply, smsc.auto_reply_delay = code_of, args.auto_reply_codes
    http = SmscHttp(smsc, port=args.http_port).start()
    print(f"SMSC on 127.0.0.1:{smsc.port}, phones on http://127.0.0.1:{http.port}/", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            time.sleep(3600)
    http.stop()
    smsc.stop()


if __name__ == "__main__":
    main()
