"""Every word the customer's verification page shows, per language: English and Hindi, and
English for any other language. Values are `str.format` templates; the page escapes the
result, so a catalog holds plain text only."""

from __future__ import annotations

DEFAULT = "en"

CATALOGS: dict[str, dict[str, str]] = {
    "en": {
        "title_link": "Confirm your order",
        "title_otp": "Verify your order",
        "order": "Order {name}",
        "details": "Order details",
        "item": "{title} × {quantity}",
        "amount": "Amount",
        "city": "Delivery city",
        "ask_link": "Please confirm that you placed this order.",
        "confirm": "Confirm order",
        "cancel": "Cancel order",
        "callback": "Request a call back",
        "heading_confirmed": "Order confirmed",
        "heading_cancelled": "Order cancelled",
        "heading_callback": "Call back requested",
        "heading_closed": "No answer needed",
        "ask_cancel_title": "Cancel this order?",
        "ask_cancel": "Cancelling cannot be undone. Do you want to cancel order {name}?",
        "cancel_sure": "Yes, cancel my order",
        "keep": "No, keep my order",
        "contact": "Questions? Call {shop} on {phone}.",
        "status_confirmed": "Your order is confirmed. Thank you!",
        "status_cancelled": "Your order is cancelled.",
        "status_callback": "We will call you back.",
        "status_closed": "This order is no longer awaiting confirmation.",
        "ask_otp": "Enter the {length}-digit code we sent you by SMS.",
        "code_label": "Verification code",
        "code_hint": "{length} digits",
        "verify": "Verify",
        "resend": "Send a new code",
        "resend_wait": "Send a new code (in {seconds} s)",
        "otp_verified": "Thank you, the code is correct.",
        "otp_wrong_one": "That code is not correct. 1 attempt left.",
        "otp_wrong_other": "That code is not correct. {left} attempts left.",
        "otp_locked": "Too many wrong codes. This order can no longer be verified with a code.",
        "otp_expired": "This code has expired. Please ask for a new code.",
        "otp_resent": "We have sent you a new code by SMS.",
        "otp_too_early": "Please wait {seconds} seconds before asking for a new code.",
        "otp_resend_limit": "No more codes can be sent for this order.",
        "otp_already_verified": "This order is already verified.",
        "otp_not_pending": "This order is no longer awaiting a code.",
        "bad_code": "The code must be exactly {length} digits. Nothing was counted; "
        "please try again.",
        "bad_action": "That choice is not available. Please use one of the buttons below.",
        "bad_form": "The form was empty or incomplete. Please use the buttons below.",
        "not_found_title": "Link not valid",
        "not_found": "This link is not valid. Please check that you opened the whole link "
        "from your SMS.",
        "order_gone": "This order can no longer be found.",
        "expired_title": "Link expired",
        "expired": "This link has expired. Nothing was changed on your order.",
    },
    "hi": {
        "title_link": "अपने ऑर्डर की पुष्टि करें",
        "title_otp": "अपना ऑर्डर सत्यापित करें",
        "order": "ऑर्डर {name}",
        "details": "ऑर्डर का विवरण",
        "item": "{title} × {quantity}",
        "amount": "राशि",
        "city": "डिलीवरी का शहर",
        "ask_link": "कृपया पुष्टि करें कि यह ऑर्डर आपने दिया है।",
        "confirm": "ऑर्डर की पुष्टि करें",
        "cancel": "ऑर्डर रद्द करें",
        "callback": "कॉल बैक का अनुरोध करें",
        "heading_confirmed": "ऑर्डर की पुष्टि हो गई",
        "heading_cancelled": "ऑर्डर रद्द कर दिया गया",
        "heading_callback": "कॉल बैक का अनुरोध मिल गया",
        "heading_closed": "किसी जवाब की ज़रूरत नहीं",
        "ask_cancel_title": "यह ऑर्डर रद्द करें?",
        "ask_cancel": "रद्द करने के बाद इसे वापस नहीं लिया जा सकता। "
        "क्या आप ऑर्डर {name} रद्द करना चाहते हैं?",
        "cancel_sure": "हाँ, मेरा ऑर्डर रद्द करें",
        "keep": "नहीं, मेरा ऑर्डर रखें",
        "contact": "कोई सवाल हो तो {shop} को {phone} पर कॉल करें।",
        "status_confirmed": "आपके ऑर्डर की पुष्टि हो गई है। धन्यवाद!",
        "status_cancelled": "आपका ऑर्डर रद्द कर दिया गया है।",
        "status_callback": "हम आपको वापस कॉल करेंगे।",
        "status_closed": "यह ऑर्डर अब पुष्टि की प्रतीक्षा में नहीं है।",
        "ask_otp": "हमने SMS से जो {length} अंकों का कोड भेजा है, उसे दर्ज करें।",
        "code_label": "सत्यापन कोड",
        "code_hint": "{length} अंक",
        "verify": "सत्यापित करें",
        "resend": "नया कोड भेजें",
        "resend_wait": "नया कोड भेजें ({seconds} सेकंड बाद)",
        "otp_verified": "धन्यवाद, कोड सही है।",
        "otp_wrong_one": "यह कोड सही नहीं है। 1 प्रयास बाकी है।",
        "otp_wrong_other": "यह कोड सही नहीं है। {left} प्रयास बाकी हैं।",
        "otp_locked": "बहुत बार गलत कोड डाला गया। अब इस ऑर्डर को कोड से सत्यापित नहीं किया जा सकता।",
        "otp_expired": "इस कोड की समय-सीमा समाप्त हो गई है। कृपया नया कोड मँगाएँ।",
        "otp_resent": "हमने आपको SMS से नया कोड भेज दिया है।",
        "otp_too_early": "नया कोड मँगाने से पहले कृपया {seconds} सेकंड प्रतीक्षा करें।",
        "otp_resend_limit": "इस ऑर्डर के लिए अब और कोड नहीं भेजे जा सकते।",
        "otp_already_verified": "यह ऑर्डर पहले ही सत्यापित हो चुका है।",
        "otp_not_pending": "यह ऑर्डर अब कोड की प्रतीक्षा में नहीं है।",
        "bad_code": "कोड ठीक {length} अंकों का होना चाहिए। कुछ भी गिना नहीं गया; कृपया फिर से कोशिश करें।",
        "bad_action": "यह विकल्प उपलब्ध नहीं है। कृपया नीचे दिए गए बटनों में से किसी एक का उपयोग करें।",
        "bad_form": "फ़ॉर्म खाली या अधूरा था। कृपया नीचे दिए गए बटनों का उपयोग करें।",
        "not_found_title": "लिंक मान्य नहीं है",
        "not_found": "यह लिंक मान्य नहीं है। कृपया जाँच लें कि आपने SMS का पूरा लिंक खोला है।",
        "order_gone": "यह ऑर्डर अब नहीं मिल रहा है।",
        "expired_title": "लिंक की समय-सीमा समाप्त",
        "expired": "इस लिंक की समय-सीमा समाप्त हो गई है। आपके ऑर्डर में कोई बदलाव नहीं किया गया।",
    },
}


def language_of(code: str) -> str:
    """The catalog for a shop's or browser's language code ("hi-IN" -> "hi"), else English."""
    primary = code.strip().lower().replace("_", "-").partition("-")[0]
    return primary if primary in CATALOGS else DEFAULT


def negotiate(accept_language: str) -> str:
    """The catalog a browser's Accept-Language prefers most (for pages that know no shop)."""
    ranked: list[tuple[float, str]] = []
    for part in accept_language.split(","):
        tag, _, params = part.partition(";")
        weight = 1.0
        if params.strip().startswith("q="):
            try:
                weight = float(params.strip()[2:])
            except ValueError:
                continue
        primary = tag.strip().lower().partition("-")[0]
        if primary in CATALOGS and weight > 0:
            ranked.append((weight, primary))
    return max(ranked, key=lambda pair: pair[0])[1] if ranked else DEFAULT


def translate(language: str, key: str, **values: object) -> str:
    return CATALOGS[language_of(language)][key].format(**values)
