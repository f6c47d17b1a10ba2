"""What the verification call says and which keys it accepts, in the shop's language.

Seed 000: 1 confirms, 2 cancels, 3 asks for a callback (the keys are the shop's to change);
an option whose tag is left empty is not offered. No input or a wrong key repeats the
question once, then the call ends.
"""

from __future__ import annotations

from dataclasses import dataclass

from flows.shops.settings import ShopSettings
from flows.verification.flow import ivr_keys
from storage.models import Order, Shop

_CURRENCY_WORDS = {
    "en": {"INR": "rupees", "USD": "dollars", "EUR": "euros", "GBP": "pounds"},
    "hi": {"INR": "रुपये", "USD": "डॉलर"},
}
_TEXT = {
    "en": {
        "intro": "Hello from {shop}. You placed order {order} for {amount} {currency}, "
        "to be paid on delivery.",
        "confirm": "Press {key} to confirm the order.",
        "cancel": "Press {key} to cancel it.",
        "callback": "Press {key} if you would like us to call you back.",
        "thanks": "Thank you. Your answer has been recorded. Goodbye.",
        "no_input": "We did not receive your answer. We will try again later. Goodbye.",
    },
    "hi": {
        "intro": "{shop} की ओर से नमस्ते। आपने {amount} {currency} का ऑर्डर {order} दिया है, "
        "जिसका भुगतान डिलीवरी पर होगा।",
        "confirm": "ऑर्डर पक्का करने के लिए {key} दबाएँ।",
        "cancel": "रद्द करने के लिए {key} दबाएँ।",
        "callback": "हमसे वापस कॉल पाने के लिए {key} दबाएँ।",
        "thanks": "धन्यवाद। आपका जवाब दर्ज हो गया है।",
        "no_input": "हमें आपका जवाब नहीं मिला। हम बाद में फिर कोशिश करेंगे।",
    },
}


@dataclass(frozen=True)
class IvrScript:
    language: str
    prompt: str
    keys: frozenset[str]  # the digits this call accepts
    thanks: str
    no_input: str


def language_of(shop: Shop, settings: ShopSettings) -> str:
    """The shop's language: the merchant's choice, else its primary locale in Shopify."""
    return settings.language or shop.language


def script(shop: Shop, order: Order, settings: ShopSettings) -> IvrScript:
    language = language_of(shop, settings)
    language = language if language in _TEXT else "en"
    text = _TEXT[language]
    keys = ivr_keys(settings)
    currency = _CURRENCY_WORDS[language].get(order.currency, order.currency)
    intro = text["intro"].format(
        shop=shop.name, order=order.name.lstrip("#"), amount=order.total_amount, currency=currency
    )
    choices = [text[action].format(key=key) for action, key in keys.items()]
    prompt = " ".join([intro, *choices])
    return IvrScript(language, prompt, frozenset(keys.values()), text["thanks"], text["no_input"])
