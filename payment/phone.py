"""Cameroonian mobile-money numbers: format and operator checks, done before Campay is called.

A number is ``237`` followed by nine digits starting with 6. The operator is known from the
prefix (national numbering plan): MTN owns 650-654, 67x and 680-683; Orange owns 655-659 and
69x. A payment is refused when the chosen provider does not own the number's prefix, so the
user learns at once instead of waiting for a USSD prompt that never comes.
"""

from __future__ import annotations

import re

from cloudgrpc_proto.errors import InvalidArgument

MTN_MOMO = "mtn_momo"
ORANGE_MONEY = "orange_money"
PROVIDERS: dict[str, str] = {MTN_MOMO: "MTN Mobile Money", ORANGE_MONEY: "Orange Money"}

_ALIASES = {
    "mtn": MTN_MOMO, "mtn_momo": MTN_MOMO, "momo": MTN_MOMO, "mtn-momo": MTN_MOMO,
    "mtn momo": MTN_MOMO, "mtn mobile money": MTN_MOMO,
    "orange": ORANGE_MONEY, "orange_money": ORANGE_MONEY, "orange-money": ORANGE_MONEY,
    "orange money": ORANGE_MONEY, "om": ORANGE_MONEY,
}
_SEPARATORS = re.compile(r"[\s.\-()/]", re.ASCII)
# ASCII digits only: ``\d``, ``str.isdigit`` and ``int`` also take full-width, Arabic-Indic
# and other Unicode digits, which Campay and the operators do not.
_DIGITS = re.compile(r"[0-9]+", re.ASCII)
_FORMAT = re.compile(r"2376[0-9]{8}", re.ASCII)
MAX_INPUT = 40  # longer input is not a phone number, whatever it contains
EXAMPLE = "237670000001"


class PhoneError(InvalidArgument):
    """The phone number or provider is not acceptable."""


def normalize_provider(provider: str) -> str:
    """``mtn_momo`` or ``orange_money`` from what a user may type ("MTN", "orange", ...)."""
    key = (provider or "").strip().lower()
    if key not in _ALIASES:
        raise PhoneError(
            f"unknown provider {provider!r}: choose mtn_momo (MTN Mobile Money) or "
            "orange_money (Orange Money)")
    return _ALIASES[key]


def normalize_phone(phone: str) -> str:
    """The number as Campay wants it (``2376XXXXXXXX``); spaces, dashes and ``+`` are dropped."""
    raw = (phone or "").strip()
    if len(raw) > MAX_INPUT:
        raise PhoneError(f"not a phone number: longer than {MAX_INPUT} characters "
                         f"(expected 237 and 9 digits, e.g. {EXAMPLE})")
    digits = _SEPARATORS.sub("", raw)
    if digits.startswith("+"):
        digits = digits[1:]
    elif digits.startswith("00"):
        digits = digits[2:]
    if not _DIGITS.fullmatch(digits):
        raise PhoneError(f"not a phone number: {raw!r} (expected 237 and 9 digits, "
                         f"e.g. {EXAMPLE})")
    if not digits.startswith("237"):
        raise PhoneError(f"the number must start with the country code 237 (e.g. {EXAMPLE}), "
                         f"got {raw!r}")
    if not _FORMAT.fullmatch(digits):
        raise PhoneError(f"not a Cameroonian mobile number: {raw!r} (expected 237 followed by "
                         f"9 digits starting with 6, e.g. {EXAMPLE})")
    return digits


def provider_of(phone: str) -> str | None:
    """The provider owning a normalized number's prefix, or None for an unassigned prefix."""
    prefix = phone[3:6]
    p2 = prefix[:2]
    if p2 == "67" or "650" <= prefix <= "654" or "680" <= prefix <= "683":
        return MTN_MOMO
    if p2 == "69" or "655" <= prefix <= "659":
        return ORANGE_MONEY
    return None


def validate(provider: str, phone: str) -> tuple[str, str]:
    """(provider, phone) normalized, or ``PhoneError`` saying what is wrong."""
    provider = normalize_provider(provider)
    phone = normalize_phone(phone)
    owner = provider_of(phone)
    if owner is None:
        raise PhoneError(f"{phone} is neither an MTN nor an Orange mobile number (prefix "
                         f"{phone[3:6]}): only MTN Mobile Money and Orange Money are supported")
    if owner != provider:
        raise PhoneError(f"{phone} is an {PROVIDERS[owner]} number, not {PROVIDERS[provider]}: "
                         f"choose {owner} or use another number")
    return provider, phone
