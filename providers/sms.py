"""SMS encoding and segment maths (3GPP TS 23.038): GSM-7 or UCS-2, and how many segments.

Left to the text, a single character outside GSM-7 makes the whole message UCS-2. A merchant's
choice (Exotel's EncodingType: "plain" is GSM-7, "unicode" UCS-2) decides instead. GSM-7
extension characters take two septets and, like UCS-2 surrogate pairs, are never split across
segments.
"""

from __future__ import annotations

from dataclasses import dataclass

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")
# GSM-7 look-alikes of common characters outside it; anything else becomes "?".
_GSM7_STAND_INS = str.maketrans(
    {
        "\u00a0": " ",
        "\u202f": " ",
        "\u2009": " ",
        "“": '"',
        "”": '"',
        "‘": "'",
        "’": "'",
        "–": "-",
        "—": "-",
        "…": "...",
    }
)

# (single message, per segment of a concatenated message), in septets or UTF-16 units.
GSM7_LIMITS = (160, 153)
UCS2_LIMITS = (70, 67)


@dataclass(frozen=True)
class SmsShape:
    encoding: str  # "GSM-7" | "UCS-2"
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int

    @property
    def unicode(self) -> bool:
        return self.encoding == "UCS-2"


def is_gsm7(text: str) -> bool:
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def not_gsm7(text: str) -> list[str]:
    """The characters of `text` that GSM-7 cannot carry, each once, in order of appearance."""
    return list(
        dict.fromkeys(ch for ch in text if ch not in GSM7_BASIC and ch not in GSM7_EXTENSION)
    )


def to_gsm7(text: str) -> str:
    """`text` as a plain (GSM-7) SMS carries it: look-alikes for common characters outside
    GSM-7, "?" for the rest (what a handset would show for them)."""
    text = text.translate(_GSM7_STAND_INS)
    return "".join(ch if ch in GSM7_BASIC or ch in GSM7_EXTENSION else "?" for ch in text)


def measure(text: str, encoding: str = "") -> SmsShape:
    """The encoding, length and segment count of an SMS body (at least one segment), in the
    chosen `encoding` ("plain" or "unicode"), else in the one its text needs."""
    if encoding == "plain" or (encoding != "unicode" and is_gsm7(text)):
        costs = [2 if ch in GSM7_EXTENSION else 1 for ch in text]
        return SmsShape("GSM-7", sum(costs), _segments(costs, GSM7_LIMITS))
    costs = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
    return SmsShape("UCS-2", sum(costs), _segments(costs, UCS2_LIMITS))


def _segments(costs: list[int], limits: tuple[int, int]) -> int:
    single, per_segment = limits
    if sum(costs) <= single:
        return 1
    segments, used = 1, 0
    for cost in costs:
        if used + cost > per_segment:
            segments, used = segments + 1, 0
        used += cost
    return segments
