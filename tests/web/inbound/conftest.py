"""The messaging fixtures (a shop with SMS by the platform's Twilio and WhatsApp by its Gupshup,
the fakes, the real app and worker) for the inbound tests; their definitions live with the
messaging tests."""

from tests.web.test_messaging import (  # noqa: F401 (fixtures)
    fakes,
    order,
    port,
    res,
    server,
    settings,
    worker,
)
