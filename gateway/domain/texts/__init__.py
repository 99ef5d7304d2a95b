"""The one text catalogue: every text a viewer reads (SMS, the payment and pairing pages, what
the TV shows), in zh-CN and en, one module a language; and how texts are rendered."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple
from zoneinfo import ZoneInfo

from gateway.domain.money import Money
from gateway.domain.texts import en, zh_cn

__all__ = ["CATALOGUE", "Catalogue", "CODE_MASK", "DEFAULT_LANGUAGE", "LANGUAGES", "PageTexts",
           "Texts"]

CODE_MASK = "******"



class Catalogue(NamedTuple):
    """One language's texts, by where they are read."""

    sms: dict[str, str]
    pages: dict[str, str]
    tv: dict[str, str]


# one module a language, with the same keys
CATALOGUE = {language: Catalogue(module.SMS, module.PAGES, module.TV)
             for language, module in (("zh-CN", zh_cn), ("en", en))}
LANGUAGES = tuple(CATALOGUE)
DEFAULT_LANGUAGE = "zh-CN"


class Texts:
    """Renders SMS texts (and what the TV shows) in one language for one merchant and display
    time zone."""

    def __init__(self, language: str, merchant: str, timezone: str) -> None:
        self._texts = CATALOGUE[language].sms
        self._tv = CATALOGUE[language].tv
        self.language = language
        self.merchant = merchant
        self._zone = ZoneInfo(timezone)

    def render(self, kind: str, **values: object) -> str:
        return self._texts[kind].format(merchant=self.merchant, **values)

    def amount(self, money: Money) -> str:
        if money.currency == "CNY" and self.language == "zh-CN":
            return f"{money.decimal_text()}元"
        return f"{money.decimal_text()} {money.currency}"

    def local(self, moment: datetime) -> datetime:
        """``moment`` in the display time zone."""
        return moment.astimezone(self._zone)

    def date(self, moment: datetime) -> str:
        return self.local(moment).strftime(self._texts["date"])

    def source(self, kind: str, *, bank: str = "", last4: str = "") -> str:
        return self.render(f"source_{kind}", bank=bank, last4=last4)

    def tv(self, key: str) -> str | None:
        """What the TV shows for a live event's key, or None for one this version lacks."""
        return self._tv.get(key)


class PageTexts:
    """The page texts of one language; templates call it: ``t("pay", amount=...)``."""

    def __init__(self, language: str) -> None:
        self.language = language
        self._texts = CATALOGUE[language].pages

    def __call__(self, key: str, **values: object) -> str:
        return self._texts[key].format(**values)

    def has(self, key: str) -> bool:
        return key in self._texts
