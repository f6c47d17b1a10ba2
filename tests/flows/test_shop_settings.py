"""The settings document: seed 000's fields, ranges, defaults; all problems reported at once."""

import json
from typing import Any

import pytest

from flows.shops.settings import (
    ORDER_FIELDS,
    ORDER_PLACEHOLDERS,
    SHOP_SETTINGS_DEFAULTS,
    SettingsError,
    ShopSettings,
    template_variables,
    validate_settings,
)

COMPLETE = {
    "contact_phone": "+919876543210",
    "ivr.caller_id": "08047112345",
    "ivr.flow_id": "123456",
    "fallback.mode": "sms_link",
    "fallback.sms_link.sender_id": "XYZSHP",
    "fallback.sms_link.dlt_entity_id": "1101234567890123456",
    "fallback.sms_link.dlt_template_id": "1107123456789012345",
}
SMS_LINK = "fallback.sms_link"
MISSED_CALL = "fallback.missed_call"


def doc(changes: dict[str, Any] | None = None) -> dict[str, Any]:
    document = SHOP_SETTINGS_DEFAULTS.document()
    for path, value in (changes or {}).items():
        *parents, name = path.split(".")
        node = document
        for key in parents:
            node = node[key]
        node[name] = value
    return document


def problems(changes: dict[str, Any], country: str = "US") -> set[str]:
    try:
        validate_settings(doc(changes), country=country)
    except SettingsError as exc:
        return {problem.field for problem in exc.problems}
    return set()


def test_defaults_are_seed_000_defaults_and_valid():
    for country in ("US", "IN"):
        assert validate_settings(doc(), country=country) == SHOP_SETTINGS_DEFAULTS
    defaults = SHOP_SETTINGS_DEFAULTS
    assert (defaults.verification.for_orders, defaults.verification.type) == ("cod", "ivr")
    assert defaults.fallback.sms_link.link_expiry_hours == 48
    assert defaults.ivr.timezone == ""  # the shop's own, from Shopify
    assert defaults.ivr.confirm_tag and defaults.otp.verified_tag
    assert "{XYZ Shop}" not in json.dumps(defaults.document())


def test_json_schema_carries_ranges_and_holds_no_credentials():
    schema = ShopSettings.model_json_schema()
    ivr = schema["$defs"]["IvrSettings"]["properties"]
    assert (ivr["retries"]["minimum"], ivr["retries"]["maximum"]) == (0, 5)
    assert "credentials" not in schema["properties"]  # they belong to the provider accounts


def bounds(path: str, low: int, high: int, **extra: Any) -> list[Any]:
    """Valid at both edges, invalid just outside them."""
    return [
        pytest.param({path: low, **extra}, set(), id=f"{path}={low}"),
        pytest.param({path: high, **extra}, set(), id=f"{path}={high}"),
        pytest.param({path: low - 1, **extra}, {path}, id=f"{path}={low - 1}"),
        pytest.param({path: high + 1, **extra}, {path}, id=f"{path}={high + 1}"),
    ]


def retries_bounds(section: str) -> list[Any]:
    """Retries 0 (with interval 0) and 5 are valid; -1 and 6 are not."""
    path = f"{section}.retries"
    return [
        pytest.param({path: 0, f"{section}.retry_interval_minutes": 0}, set(), id=f"{path}=0"),
        pytest.param({path: 5}, set(), id=f"{path}=5"),
        pytest.param({path: -1}, {path}, id=f"{path}=-1"),
        pytest.param({path: 6}, {path}, id=f"{path}=6"),
    ]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        *retries_bounds("ivr"),
        *bounds("ivr.retry_interval_minutes", 10, 120),
        *bounds("ivr.first_call_after_minutes", 1, 1440, **{"ivr.first_call": "after"}),
        ({"ivr.window_start_hour": 0}, set()),
        ({"ivr.window_start_hour": -1}, {"ivr.window_start_hour"}),
        ({"ivr.window_start_hour": 24}, {"ivr.window_start_hour"}),
        ({"ivr.window_start_hour": 22, "ivr.window_end_hour": 23}, set()),
        ({"ivr.window_end_hour": 24}, {"ivr.window_end_hour"}),
        ({"ivr.window_end_hour": -1}, {"ivr.window_end_hour"}),
        *retries_bounds(SMS_LINK),
        *bounds(f"{SMS_LINK}.retry_interval_minutes", 10, 60),
        *bounds(f"{SMS_LINK}.link_expiry_hours", 1, 72),
        *retries_bounds(MISSED_CALL),
        *bounds(f"{MISSED_CALL}.retry_interval_minutes", 10, 60),
        *bounds("otp.resend_limit", 0, 5),
        *bounds("otp.resend_after_seconds", 10, 600),
        *bounds("otp.wrong_attempts_limit", 0, 5),
        # OWASP ASVS V2.7: an out-of-band code has 6+ digits and lives 10 minutes at most.
        *bounds("otp.code_length", 6, 8),
        *bounds("otp.expiry_minutes", 1, 10),
    ],
)
def test_range_bounds(changes, expected):
    assert problems(changes) == expected


@pytest.mark.parametrize("section", ["ivr", SMS_LINK, MISSED_CALL])
@pytest.mark.parametrize(
    ("retries", "interval", "valid"),
    [(0, 0, True), (0, 10, False), (1, 0, False), (1, 9, False), (1, 10, True)],
)
def test_retry_interval_is_zero_exactly_when_retries_are_zero(section, retries, interval, valid):
    changes = {f"{section}.retries": retries, f"{section}.retry_interval_minutes": interval}
    assert problems(changes) == (set() if valid else {f"{section}.retry_interval_minutes"})


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"ivr.first_call": "immediate", "ivr.first_call_after_minutes": 0}, set()),
        ({"ivr.window_start_hour": 23, "ivr.window_end_hour": 23}, {"ivr.window_end_hour"}),
        ({"ivr.window_start_hour": 21, "ivr.window_end_hour": 21}, {"ivr.window_end_hour"}),
        ({"ivr.window_start_hour": 22, "ivr.window_end_hour": 21}, {"ivr.window_end_hour"}),
    ],
)
def test_ivr_rules_spanning_fields(changes, expected):
    assert problems(changes) == expected


@pytest.mark.parametrize(
    ("path", "template", "message"),
    [
        (f"{SMS_LINK}.template", "Confirm %ordername%", "must contain the %link% placeholder"),
        (f"{MISSED_CALL}.template", "Call us for %ordername%", "%exophone%"),
        ("otp.template", "Your code for %ordername%", "must contain the %otp% placeholder"),
        (f"{SMS_LINK}.template", "%link% %shopname%", "unknown placeholder %shopname%"),
        ("otp.template", "%otp% %exophone%", "unknown placeholder %exophone%"),
        (f"{MISSED_CALL}.confirmation_template", "Confirmed: %link%", "unknown placeholder"),
        (f"{MISSED_CALL}.confirmation_template", "  ", "must not be empty"),
    ],
)
def test_template_placeholders(path, template, message):
    with pytest.raises(SettingsError) as raised:
        validate_settings(doc({path: template}), country="US")
    [problem] = raised.value.problems
    assert problem.field == path and message in problem.message


def test_templates_accept_their_supported_placeholders():
    changes = {
        f"{SMS_LINK}.template": "%ordernumber% %ordername% %orderamount% %link% 100%",
        f"{MISSED_CALL}.confirmation_template": "%ordername% %orderamount% %exophone%",
        "otp.template": "%otp% for %ordernumber%",
    }
    assert problems(changes) == set()


@pytest.mark.parametrize("placeholder", ORDER_PLACEHOLDERS)
@pytest.mark.parametrize(
    ("mode", "expected"), [("latest_3_in_30_days", {f"{MISSED_CALL}.template"}), ("latest", set())]
)
def test_three_orders_mode_forbids_order_placeholders(placeholder, mode, expected):
    changes = {
        f"{MISSED_CALL}.confirm_mode": mode,
        f"{MISSED_CALL}.template": f"Confirm {placeholder}: missed call on %exophone%",
    }
    assert problems(changes) == expected


DLT = ("dlt_entity_id", "dlt_template_id")


@pytest.mark.parametrize(
    ("changes", "india"),
    [
        ({"verification.type": "otp"}, {f"otp.{name}" for name in DLT}),
        ({"fallback.mode": "sms_link"}, {f"{SMS_LINK}.{name}" for name in DLT}),
        (
            {"fallback.mode": "missed_call"},
            {f"{MISSED_CALL}.{name}" for name in (*DLT, "confirmation_dlt_template_id")},
        ),
        (
            {"verification.type": "otp", "fallback.mode": "sms_link"},
            {"otp.dlt_entity_id", "otp.dlt_template_id"},
        ),
        (
            {"verification.type": "whatsapp", "fallback.mode": "missed_call"},
            {f"{MISSED_CALL}.{name}" for name in (*DLT, "confirmation_dlt_template_id")},
        ),
        ({"verification.type": "whatsapp"}, set()),
        (
            {"verification.type": "otp", "otp.dlt_entity_id": "11", "otp.dlt_template_id": "12"},
            set(),
        ),
    ],
)
def test_dlt_ids_are_required_in_india_for_the_sections_in_use(changes, india):
    assert problems(changes, country="IN") == india
    assert problems(changes, country="in") == india
    assert problems(changes, country="US") == set()


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"ivr.confirm_tag": ""}, {"ivr.confirm_tag"}),
        ({"ivr.confirm_tag": "   "}, {"ivr.confirm_tag"}),
        ({f"{SMS_LINK}.confirm_tag": ""}, {f"{SMS_LINK}.confirm_tag"}),
        ({f"{MISSED_CALL}.confirm_tag": ""}, {f"{MISSED_CALL}.confirm_tag"}),
        ({"otp.verified_tag": ""}, {"otp.verified_tag"}),
        ({"ivr.cancel_tag": "", "ivr.callback_tag": "", f"{SMS_LINK}.cancel_tag": ""}, set()),
        ({"ivr.confirm_tag": "a,b"}, {"ivr.confirm_tag"}),
        ({"ivr.confirm_tag": "x" * 40}, set()),
        ({"ivr.confirm_tag": "x" * 41}, {"ivr.confirm_tag"}),
        ({"ivr.timezone": "Mars/Olympus"}, {"ivr.timezone"}),
        ({"ivr.timezone": "localtime"}, {"ivr.timezone"}),
        ({"ivr.timezone": "Asia/Calcutta"}, set()),
        ({"ivr.colour": "red"}, {"ivr.colour"}),
        ({"colour": "red"}, {"colour"}),
        ({"contact_phone": "+12025550123"}, set()),
        ({"contact_phone": "9876543210"}, {"contact_phone"}),
        ({"contact_phone": "+1234567"}, {"contact_phone"}),
        ({"ivr.caller_id": "080-4711"}, {"ivr.caller_id"}),
        ({"ivr.flow_id": "flow1"}, {"ivr.flow_id"}),
        ({"otp.dlt_entity_id": "11a"}, {"otp.dlt_entity_id"}),
        ({"otp.encoding": "gsm"}, {"otp.encoding"}),
        ({"credentials": {"account_sid": "x"}}, {"credentials"}),
        ({"language": "hi"}, set()),
        ({"language": "fr"}, {"language"}),
        ({"verification.type": "email"}, {"verification.type"}),
        ({"verification.for_orders": "prepaid"}, {"verification.for_orders"}),
    ],
)
def test_field_rules(changes, expected):
    assert problems(changes) == expected


def test_every_problem_is_reported_at_once():
    changes = {
        "ivr.retries": 9,
        "ivr.window_start_hour": 22,
        f"{SMS_LINK}.retries": 0,
        f"{SMS_LINK}.link_expiry_hours": 0,
        "otp.template": "code %code%",
        "verification.type": "otp",
        f"{MISSED_CALL}.confirm_mode": "latest_3_in_30_days",
        f"{MISSED_CALL}.template": "%ordername%: %exophone%",
        "ivr.region": "x",
    }
    assert problems(changes, country="IN") == {
        "ivr.retries",
        "ivr.window_end_hour",
        f"{SMS_LINK}.retry_interval_minutes",
        f"{SMS_LINK}.link_expiry_hours",
        "otp.template",
        "otp.dlt_entity_id",
        "otp.dlt_template_id",
        f"{MISSED_CALL}.template",
        "ivr.region",
    }


def test_rules_do_not_judge_values_that_failed_on_their_own():
    # retries 9 is refused; its interval is not judged against a value that was never accepted
    assert problems({"ivr.retries": 9, "ivr.retry_interval_minutes": 5}) == {"ivr.retries"}
    # an unknown type is not read as the default "ivr", which would ask for the fallback's DLT ids
    changes = {"verification.type": "sms", "fallback.mode": "sms_link"}
    assert problems(changes, country="IN") == {"verification.type"}


def test_a_document_that_is_not_an_object_is_refused():
    with pytest.raises(SettingsError) as raised:
        validate_settings([], country="US")  # type: ignore[arg-type]
    assert [problem.field for problem in raised.value.problems] == [""]


def test_the_document_round_trips():
    stored = validate_settings(doc(COMPLETE), country="IN")
    assert ShopSettings.model_validate(stored.document()) == stored


SMS_TEMPLATES = (
    ("otp", "template", "%otp% for %ordername%"),
    (SMS_LINK, "template", "Confirm %ordername%: %link%"),
    (MISSED_CALL, "template", "Missed call on %exophone%"),
    (MISSED_CALL, "confirmation_template", "Thanks, %ordername% is confirmed"),
)


@pytest.mark.parametrize(("section", "name", "template"), SMS_TEMPLATES)
def test_a_plain_sms_template_must_be_gsm7(section, name, template):
    rupee = f"₹ “{template}”"
    with pytest.raises(SettingsError) as raised:
        validate_settings(doc({f"{section}.{name}": rupee}), country="US")
    [problem] = raised.value.problems
    assert problem.field == f"{section}.{name}"
    assert "₹“”" in problem.message and "unicode" in problem.message
    # In unicode the same template is fine; in plain, GSM-7's extension characters are too.
    assert problems({f"{section}.{name}": rupee, f"{section}.encoding": "unicode"}) == set()
    assert problems({f"{section}.{name}": f"€ {{x}} {template}"}) == set()


def test_whatsapp_template_params_default_to_the_order_name_and_amount():
    assert SHOP_SETTINGS_DEFAULTS.whatsapp.template_params == ["order_name", "amount"]
    assert set(ORDER_FIELDS) >= {
        "order_name",
        "order_number",
        "amount",
        "customer_name",
        "shop_name",
        "city",
        "items",
    }


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (["customer_name", "order_number", "amount", "shop_name", "city", "items"], set()),
        ([], set()),
        (["order_name", "colour"], {"whatsapp.template_params.1"}),
        (["order_name"] * 21, {"whatsapp.template_params"}),
        ("order_name", {"whatsapp.template_params"}),
    ],
)
def test_whatsapp_template_params_are_order_fields(params, expected):
    assert problems({"whatsapp.template_params": params}) == expected


def test_whatsapp_template_params_must_fit_a_known_template():
    document = doc({"whatsapp.template_id": "order_confirm", "whatsapp.template_params": ["city"]})
    with pytest.raises(SettingsError) as raised:
        validate_settings(document, country="IN", template_variables=3)
    [problem] = raised.value.problems
    assert problem.field == "whatsapp.template_params"
    assert "3 variables" in problem.message and "1 is mapped" in problem.message
    validate_settings(document, country="IN", template_variables=1)
    validate_settings(document, country="IN", template_variables=None)  # not known: no check


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("Hi {{1}}, your order {{2}} of {{3}} is waiting.", 3),
        ("Hi {{1}}, again {{1}} and {{ 2 }}", 2),
        ("No variables here {x} {{}}", 0),
    ],
)
def test_a_templates_variables_are_counted(text, count):
    assert template_variables(text) == count
