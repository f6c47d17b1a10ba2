"""The tokens a notification template may use, rendering, and the check made when one is saved.

Tokens are seed 000's `%ordername%` kind, seed 004's `[[firstname]]` kind and seed 002's
variables (as `%city%`, `%awb%`, ...). A part in braces, `{Track it at %trackingurl%. }`, is
kept only when every token in it has a value: seed 001's "Track it at ..." appears only with a
tracking URL. WhatsApp template variables are the same names without their marks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

TOKENS: tuple[str, ...] = (
    "ordername",
    "ordernumber",
    "orderamount",
    "shop",
    "firstname",
    "lastname",
    "fullname",
    "phone",
    "city",
    "items",
    "quantity",
    "paymentmethod",
    "orderstatusurl",
    "carrier",
    "awb",
    "trackingurl",
    "reason",
    "refundamount",
)
# Seed 004 writes the customer's names in double brackets.
_BRACKETED = frozenset({"firstname", "lastname", "fullname"})
_TOKEN = re.compile(r"%(\w+)%|\[\[(\w+)\]\]", re.ASCII)
_OPTIONAL = re.compile(r"\{([^{}]*)\}")
_SPACES = re.compile(r" {2,}")

SAMPLE_VALUES: Mapping[str, str] = {
    "ordername": "#1001",
    "ordernumber": "1001",
    "orderamount": "INR 1,499.00",
    "shop": "Demo Store",
    "firstname": "Asha",
    "lastname": "Rao",
    "fullname": "Asha Rao",
    "phone": "+919876543210",
    "city": "Bengaluru",
    "items": "Kurta x 1",
    "quantity": "1",
    "paymentmethod": "cod",
    "orderstatusurl": "https://demo.myshopify.com/orders/0f1e2d3c4b5a69788796a5b4c3d2e1f0",
    "carrier": "Delhivery",
    "awb": "1234567890",
    "trackingurl": "https://track.example/1234567890",
    "reason": "customer not reachable",
    "refundamount": "INR 1,499.00",
}


def spelt(name: str) -> str:
    """How a token is written in a template."""
    return f"[[{name}]]" if name in _BRACKETED else f"%{name}%"


def unknown_tokens(text: str) -> list[str]:
    """The tokens of `text` that are not in the vocabulary, as written."""
    found = (m.group(0) for m in _TOKEN.finditer(text) if (m.group(1) or m.group(2)) not in TOKENS)
    return sorted(set(found))


def check_text(text: str) -> str:
    """A template's text as saved: ValueError naming an unknown token or an unclosed part."""
    if not text.strip():
        raise ValueError("must not be empty")
    unknown = unknown_tokens(text)
    if unknown:
        raise ValueError(
            f"unknown token {', '.join(unknown)} "
            f"(allowed: {', '.join(spelt(name) for name in TOKENS)})"
        )
    if "{" in _OPTIONAL.sub("", text) or "}" in _OPTIONAL.sub("", text):
        raise ValueError("a { part } must be closed and not nested")
    return text


def render(text: str, values: Mapping[str, str]) -> str:
    """`text` with each token replaced by its value ("" when it has none); a braced part
    stays only when all its tokens have a value. Values are inserted once: a value that looks
    like a token is not expanded."""

    def optional(match: re.Match[str]) -> str:
        part = match.group(1)
        names = [m.group(1) or m.group(2) for m in _TOKEN.finditer(part)]
        return part if all(values.get(name) for name in names) else ""

    def token(match: re.Match[str]) -> str:
        return values.get(match.group(1) or match.group(2), "")

    kept = _OPTIONAL.sub(optional, text)
    return _SPACES.sub(" ", _TOKEN.sub(token, kept)).strip()


_VARIABLE = re.compile(r"\{\{\s*([0-9]+)\s*\}\}")


def fill_whatsapp(text: str, values: list[str]) -> str:
    """A WhatsApp template's text with {{1}}, {{2}}, ... replaced by `values` in order."""

    def variable(match: re.Match[str]) -> str:
        index = int(match.group(1)) - 1
        return values[index] if 0 <= index < len(values) else match.group(0)

    return _VARIABLE.sub(variable, text)
