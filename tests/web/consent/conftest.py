"""The messaging fixtures (a shop with SMS by Twilio and WhatsApp by Gupshup, the fakes, the
real app and worker) for the consent tests; their definitions live with the messaging tests.
The shop has written to its customer from each platform number the tests answer on."""

import pytest

from tests.web import test_messaging
from tests.web.test_messaging import SMS_FROM, wrote_from

fakes, port, res = test_messaging.fakes, test_messaging.port, test_messaging.res
server, settings, worker = test_messaging.server, test_messaging.settings, test_messaging.worker
shop_order = test_messaging.order


@pytest.fixture
async def order(shop_order, res, fakes):
    await wrote_from(res, shop_order, "twilio", SMS_FROM)
    await wrote_from(res, shop_order, "ringcentral", "+16505550100")
    await wrote_from(res, shop_order, "gupshup", fakes["gupshup"].source, "whatsapp")
    return shop_order
