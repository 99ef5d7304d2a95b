"""The built-in SMSC: a small SMPP 3.4 server with simulated phones, for local runs and tests.

It accepts binds with credentials, answers ``submit_sm`` with message ids, reassembles
concatenated parts into each phone's inbox, sends delivery receipts (as TLVs and as text),
answers ``query_sm``, and lets a phone reply (``deliver_sm``). Receipts and replies go to the
bound receivers in turn, and come again until acknowledged. Faults on demand: throttling, slow
responses, dropped or refused connections, undeliverable phones, receipts that never come, raw
bytes.

Python API: ``Smsc(...).start()``, ``messages(phone)``, ``wait_for_message(phone)``,
``reply(phone, text)``. HTTP hook: ``SmscHttp(smsc).start()`` (see ``python -m smpp.simulator``).

The modules, one concern each:

    smsc.py       the SMSC: its settings and faults, the SMPP protocol, ``smsc_address``
    sessions.py   the ESMEs' sessions, and the deliver_sm owed them, offered until acknowledged
    receipts.py   what became of each submitted part: its state, receipt and query_sm answer
    phones.py     the phones' inboxes, parts put together into whole messages
    http_face.py  the phones over HTTP (``SmscHttp``)
    __main__.py   the command line (``python -m smpp.simulator``)
"""

from __future__ import annotations

from smpp.simulator.http_face import SmscHttp
from smpp.simulator.phones import PhoneMessage, code_of
from smpp.simulator.smsc import Smsc, smsc_address

__all__ = ["PhoneMessage", "Smsc", "SmscHttp", "code_of", "smsc_address"]
