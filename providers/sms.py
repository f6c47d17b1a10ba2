"""SMS encoding and segment maths (3GPP TS 23.038): GSM-7 or UCS-2, and how many segments.

A single character outside GSM-7 makes the whole message UCS-2. GSM-7 extension characters
take two septets and, like UCS-2 surrogate pairs, are never split across segments.
"""

from __future__ import annotations

from dataclasses import dataclass

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

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


def measure(text: str) -> SmsShape:
    """The encoding, length and segment count of an SMS body (at least one segment)."""
    if is_gsm7(text):
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
