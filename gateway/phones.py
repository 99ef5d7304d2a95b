"""Phone numbers: parse to E.164, check the country allow-list, mask for display and logs."""

from __future__ import annotations

import functools
import logging
import re

import phonenumbers

from gateway.domain.errors import InvalidInput

__all__ = ["install_log_masking", "mask", "mask_digits_in", "national", "parse", "pattern"]

_MOBILE_LIKE = (
    phonenumbers.PhoneNumberType.MOBILE,
    phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
)


def parse(raw: object, allowed_regions: tuple[str, ...]) -> str:
    """Return the E.164 form of ``raw`` (``"13800138000"`` → ``"+8613800138000"``).

    A number without a country code is read as one of ``allowed_regions[0]``.

    :raise InvalidInput: ``invalid_phone`` for anything that is not a valid mobile number,
        ``phone_country_not_allowed`` for a valid number outside ``allowed_regions``.
    """
    if not isinstance(raw, str) or not 3 <= len(raw) <= 32:
        raise InvalidInput("phone must be a string of a mobile number", code="invalid_phone")
    return _parse(raw, allowed_regions)


def pattern(allowed_regions: tuple[str, ...]) -> str:
    """A regular expression of the mobile numbers ``parse`` takes, in their plain forms: the
    national number of the first region, or ``+`` country code and national number of any."""
    forms = []
    for n, region in enumerate(allowed_regions):
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
        if metadata is None or metadata.mobile is None:
            continue
        mobile = (metadata.mobile.national_number_pattern or "").replace(r"\d", "[0-9]")
        country = rf"\+{metadata.country_code}"
        forms.append(f"(?:{country}){'?' if n == 0 else ''}(?:{mobile})")
    return "^(?:" + "|".join(forms) + ")$"


# Parsing costs a quarter of a millisecond, and the same numbers come again and again (an
# order, its reply, its log lines); only numbers that parse are remembered.
@functools.lru_cache(maxsize=4096)
def _parse(raw: str, allowed_regions: tuple[str, ...]) -> str:
    try:
        number = phonenumbers.parse(raw, allowed_regions[0])
    except phonenumbers.NumberParseException:
        raise InvalidInput("phone is not a phone number", code="invalid_phone") from None
    if not phonenumbers.is_valid_number(number) or (
        phonenumbers.number_type(number) not in _MOBILE_LIKE
    ):
        raise InvalidInput("phone is not a valid mobile number", code="invalid_phone")
    region = phonenumbers.region_code_for_number(number)
    if region not in allowed_regions:
        raise InvalidInput(
            f"phone numbers of {region} are not accepted", code="phone_country_not_allowed"
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@functools.lru_cache(maxsize=4096)
def national(e164: str) -> str:
    """The number as the viewer knows and types it: ``13800138000``."""
    try:
        return str(phonenumbers.parse(e164).national_number)
    except phonenumbers.NumberParseException:
        return re.sub(r"\D", "", e164)


def mask(e164: str | None) -> str | None:
    """Show a number as the viewer knows it with its middle hidden: ``138****8000``. A number
    kept masked only (erased on request) is shown as it is."""
    if e164 is None or "*" in e164:
        return e164
    return _mask_national(national(e164))


def _mask_national(digits: str) -> str:
    """Hide at least four digits: up to three shown in front, up to four behind."""
    head = min(3, max(0, (len(digits) - 4) // 2))
    tail = max(0, min(4, len(digits) - 4 - head))
    return digits[:head] + "*" * (len(digits) - head - tail) + digits[len(digits) - tail:]


# A run of digits standing on its own, not inside a longer word: the digits of ids such as a
# request id (uuid hex) or a Twilio SID are no phone number, and masking them garbles them.
_PHONE_IN_TEXT = re.compile(r"(?<![0-9A-Za-z_*])(\+?)([0-9]{7,15})(?![0-9A-Za-z_*])")


def mask_digits_in(text: str) -> str:
    """Mask every run of 7–15 digits that could be a phone number in free text."""

    def repl(match: re.Match[str]) -> str:
        digits = match.group(2)
        if match.group(1) == "+" and digits.startswith("86"):
            digits = digits[2:]
        return _mask_national(digits)

    return _PHONE_IN_TEXT.sub(repl, text)


def install_log_masking() -> None:
    """Last line of defence: mask phone numbers in every log record this process creates."""
    factory = logging.getLogRecordFactory()
    if getattr(factory, "masks_phones", False):
        return

    def masking_factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed log call: leave it for logging to report
            return record
        masked = mask_digits_in(message)
        if masked != message:
            record.msg, record.args = masked, None
        return record

    # What the factories under it do, it does too: a process that builds its app again (the
    # tests) then wraps nothing twice, whichever wrapper is on top.
    masking_factory.__dict__.update(getattr(factory, "__dict__", {}), masks_phones=True)
    logging.setLogRecordFactory(masking_factory)
