"""The messaging fixtures (a shop with SMS by Twilio and WhatsApp by Gupshup, the fakes, the
real app and worker) for the consent tests; their definitions live with the messaging tests."""

from tests.web.test_messaging import (  # noqa: F401 (fixtures)
    fakes,
    order,
    port,
    res,
    server,
    settings,
    worker,
)
