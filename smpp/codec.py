"""Texts on the SMPP wire: GSM 03.38 or UCS-2, concatenation headers, receipts, SMPP times.

Pure functions, shared by the worker and the built-in SMSC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = [
    "DATA_CODING_GSM", "DATA_CODING_LATIN1", "DATA_CODING_UCS2", "DELIVERED",
    "ESM_DELIVERY_RECEIPT", "ESM_UDHI", "FINAL_STATES", "MESSAGE_STATES", "Receipt",
    "decode_text", "encode_parts", "message_id_variants", "parse_receipt", "receipt_text",
    "smpp_absolute_time", "split_udh",
]

DATA_CODING_GSM = 0x00
DATA_CODING_LATIN1 = 0x03
DATA_CODING_UCS2 = 0x08
ESM_UDHI = 0x40
ESM_DELIVERY_RECEIPT = 0x04

# GSM 03.38 default alphabet, one character per septet value 0x00-0x7F (0x1B is the escape).
_GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION = {"\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C,
                  "~": 0x3D, "]": 0x3E, "|": 0x40, "€": 0x65}
assert len(_GSM_BASIC) == 128
_GSM_ENCODE = {char: bytes([code]) for code, char in enumerate(_GSM_BASIC) if code != 0x1B}
_GSM_ENCODE.update({char: bytes([0x1B, code]) for char, code in _GSM_EXTENSION.items()})
_GSM_DECODE_EXTENSION = {code: char for char, code in _GSM_EXTENSION.items()}

# Capacity of one SMS in characters of each alphabet, alone and with a 6-octet UDH.
_GSM_SINGLE, _GSM_PART = 160, 153
_UCS2_SINGLE, _UCS2_PART = 70, 67  # UTF-16 code units


def _gsm_units(text: str) -> list[bytes] | None:
    """Each character as its GSM septets (unpacked), or None if one does not fit GSM."""
    try:
        return [_GSM_ENCODE[char] for char in text]
    except KeyError:
        return None


def _ucs2_units(text: str) -> list[bytes]:
    """Each character as UTF-16BE: two octets, or four for a surrogate pair (never split)."""
    return [char.encode("utf-16-be") for char in text]


def _pack(units: list[bytes], capacity: int, unit_size: int) -> list[bytes]:
    """Fill parts with whole characters up to ``capacity`` septets or code units."""
    parts: list[bytes] = []
    current: list[bytes] = []
    used = 0
    for unit in units:
        size = len(unit) // unit_size
        if used + size > capacity:
            parts.append(b"".join(current))
            current, used = [], 0
        current.append(unit)
        used += size
    parts.append(b"".join(current))
    return parts


def encode_parts(text: str, reference: int) -> tuple[int, int, list[bytes]]:
    """Encode ``text`` for submit_sm: ``(data_coding, esm_class, short_messages)``.

    GSM 03.38 when every character fits it, UCS-2 otherwise. A text longer than one SMS is
    split on character boundaries, each part led by a concatenation UDH with ``reference``
    (0-255), so the phone shows it whole.
    """
    gsm = _gsm_units(text)
    if gsm is None and len(text) <= _UCS2_SINGLE:  # the usual Chinese SMS: one part, at once
        encoded = text.encode("utf-16-be")
        if len(encoded) <= 2 * _UCS2_SINGLE:
            return DATA_CODING_UCS2, 0, [encoded]
    if gsm is not None:
        coding, units, single, part, unit_size = DATA_CODING_GSM, gsm, _GSM_SINGLE, _GSM_PART, 1
    else:
        coding, units, single, part, unit_size = (DATA_CODING_UCS2, _ucs2_units(text),
                                                  _UCS2_SINGLE, _UCS2_PART, 2)
    if sum(len(u) for u in units) // unit_size <= single:
        return coding, 0, [b"".join(units)]
    chunks = _pack(units, part, unit_size)
    if len(chunks) > 255:
        raise ValueError("text too long for a concatenated SMS")
    total = len(chunks)
    return coding, ESM_UDHI, [bytes([5, 0, 3, reference & 0xFF, total, n]) + chunk
                              for n, chunk in enumerate(chunks, start=1)]


def split_udh(short_message: bytes) -> tuple[tuple[int, int, int] | None, bytes]:
    """Take the UDH off a part: ``((reference, total, number) or None, payload)``.

    Understands the 8-bit (IE 0x00) and 16-bit (IE 0x08) concatenation elements.
    :raise ValueError: for a header that does not fit in the message.
    """
    if not short_message:
        raise ValueError("empty message with UDHI set")
    length = short_message[0]
    header, payload = short_message[1:1 + length], short_message[1 + length:]
    if len(header) != length:
        raise ValueError("UDH longer than the message")
    concat = None
    i = 0
    while i + 2 <= len(header):
        ie, size = header[i], header[i + 1]
        value = header[i + 2:i + 2 + size]
        if ie == 0x00 and size == 3 and len(value) == 3:
            concat = (value[0], value[1], value[2])
        elif ie == 0x08 and size == 4 and len(value) == 4:
            concat = ((value[0] << 8) | value[1], value[2], value[3])
        i += 2 + size
    if concat is not None and not 1 <= concat[2] <= concat[1]:
        raise ValueError("concatenation part number out of range")
    return concat, payload


def _alphabet(data_coding: int) -> str:
    """The alphabet of an SMPP data_coding, including GSM 03.38 message-class codings."""
    if data_coding == DATA_CODING_UCS2:
        return "ucs2"
    if data_coding in (DATA_CODING_LATIN1, 0x02, 0x04):
        return "latin-1"
    if data_coding == 0x01:
        return "ascii"
    if 0x10 <= data_coding <= 0x3F:  # general data coding: alphabet in bits 2-3
        return ("gsm", "latin-1", "ucs2", "gsm")[(data_coding >> 2) & 0x03]
    if data_coding & 0xF0 == 0xF0:  # data coding / message class: bit 2 is 8-bit data
        return "latin-1" if data_coding & 0x04 else "gsm"
    return "gsm"


def decode_text(payload: bytes, data_coding: int) -> str:
    """Text of a message body in its data coding (unknown bytes are replaced, never fatal)."""
    alphabet = _alphabet(data_coding)
    if alphabet == "ucs2":
        return payload.decode("utf-16-be", errors="replace")
    if alphabet == "latin-1":
        return payload.decode("latin-1")
    if alphabet == "ascii":
        return payload.decode("ascii", errors="replace")
    chars: list[str] = []
    escaped = False
    for byte in payload:
        if escaped:
            chars.append(_GSM_DECODE_EXTENSION.get(byte, " "))
            escaped = False
        elif byte == 0x1B:
            escaped = True
        else:
            chars.append(_GSM_BASIC[byte & 0x7F])
    return "".join(chars)


# --- delivery receipts -------------------------------------------------------------------------

# SMPP 3.4 message_state values, and the stat words of the receipt text for each.
MESSAGE_STATES = {1: "ENROUTE", 2: "DELIVRD", 3: "EXPIRED", 4: "DELETED", 5: "UNDELIV",
                  6: "ACCEPTD", 7: "UNKNOWN", 8: "REJECTD"}
_STATE_BY_STAT = {stat: state for state, stat in MESSAGE_STATES.items()}
FINAL_STATES = frozenset({2, 3, 4, 5, 8})
DELIVERED = 2


@dataclass(frozen=True)
class Receipt:
    message_id: str
    state: int  # SMPP message_state
    error: str = ""

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def delivered(self) -> bool:
        return self.state == DELIVERED


_RECEIPT_FIELD = re.compile(r"(id|stat|err):(\S*)", re.IGNORECASE)


def parse_receipt(text: str, receipted_message_id: str | None = None,
                  message_state: int | None = None) -> Receipt | None:
    """Read a delivery receipt from its TLVs, else from its ``id:… stat:… err:…`` text."""
    if receipted_message_id and message_state == DELIVERED:
        return Receipt(receipted_message_id, DELIVERED)  # the common case needs no text
    header = re.split(r"\btext:", text, maxsplit=1, flags=re.IGNORECASE)[0]  # not the quote
    fields: dict[str, str] = {}
    for key, value in _RECEIPT_FIELD.findall(header):
        fields.setdefault(key.lower(), value)
    message_id = receipted_message_id or fields.get("id")
    state = message_state
    if state is None:
        state = _STATE_BY_STAT.get(fields.get("stat", "").upper()[:7])
    if not message_id or state is None:
        return None
    return Receipt(message_id, state, fields.get("err", ""))


def receipt_text(message_id: str, state: int, submitted: datetime, done: datetime,
                 error: str = "000") -> str:
    """The receipt text SMSCs customarily put in the short_message of a receipt."""
    stamp = "%y%m%d%H%M"
    delivered = "001" if state == DELIVERED else "000"
    return (f"id:{message_id} sub:001 dlvrd:{delivered} submit date:{submitted.strftime(stamp)} "
            f"done date:{done.strftime(stamp)} stat:{MESSAGE_STATES[state]} err:{error} text:")


def message_id_variants(message_id: str) -> list[str]:
    """Spellings one SMSC message id may take: as given, and read as hex or decimal.

    SMSCs differ: some answer submit_sm with a hex id and put it in decimal in the receipt.
    """
    variants = {message_id, message_id.lower(), message_id.upper()}
    if re.fullmatch(r"[0-9]+", message_id):
        number = int(message_id)
        variants |= {str(number), f"{number:x}", f"{number:X}"}
    if re.fullmatch(r"[0-9A-Fa-f]+", message_id):
        number = int(message_id, 16)
        variants |= {str(number), f"{number:x}", f"{number:X}"}
    return sorted(variants)


def smpp_absolute_time(moment: datetime) -> str:
    """SMPP absolute time ``YYMMDDhhmmsstnnp`` in UTC (offset 00, sign +)."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%y%m%d%H%M%S") + f"{utc.microsecond // 100000}00+"
