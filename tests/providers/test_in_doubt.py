"""Which transport failures leave a send in doubt (issue 14 item 8): a provider that took the
request and answered after the client gave up may have sent the SMS or placed the call, so the
error says `in_doubt`; a connection that was never made, a read and a token request are plain,
safe-to-retry failures."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from clock import ManualClock
from providers.base import ProviderError
from providers.exotel import ExotelClient
from providers.ringcentral import RingCentralClient
from providers.sandbox.exotel import FakeExotel
from providers.sandbox.twilio import FakeTwilio
from providers.twilio import TwilioClient
from tests.fakes.ringcentral import FakeRingCentral
from tests.providers import test_exotel, test_ringcentral, test_twilio

SHORT = 0.2  # seconds: the client gives up long before the held request is answered


async def expect_error(awaitable) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await awaitable
    return caught.value


@pytest.fixture
async def exotel() -> AsyncIterator[FakeExotel]:
    fake = FakeExotel(
        account_sid=test_exotel.SID, api_key=test_exotel.API_KEY, api_token=test_exotel.API_TOKEN
    )
    await fake.start()
    yield fake
    await fake.close()


def exotel_client(http: aiohttp.ClientSession, url: str) -> ExotelClient:
    return ExotelClient(
        http,
        account_sid=test_exotel.SID,
        api_key=test_exotel.API_KEY,
        api_token=test_exotel.API_TOKEN,
        api_url=url,
        timeout_seconds=SHORT,
    )


async def test_a_call_answered_too_late_is_in_doubt_and_was_placed(http, exotel):
    exotel.hold_next()
    error = await expect_error(exotel_client(http, exotel.base_url).place_call(test_exotel.call()))
    assert (error.retryable, error.code, error.in_doubt) == (True, "TIMEOUT", True)
    await exotel.release()
    assert len(exotel.placed_calls) == 1  # the provider did dial the customer


async def test_an_sms_answered_too_late_is_in_doubt(http, exotel):
    exotel.hold_next()
    error = await expect_error(exotel_client(http, exotel.base_url).send_sms(test_exotel.sms()))
    assert (error.code, error.in_doubt) == ("TIMEOUT", True)
    await exotel.release()
    assert len(exotel.accepted_sms) == 1


async def test_a_refused_connection_sent_nothing(http):
    url = f"http://127.0.0.1:{test_exotel.free_port()}"
    error = await expect_error(exotel_client(http, url).place_call(test_exotel.call()))
    assert (error.retryable, error.code, error.in_doubt) == (True, "CONNECTION", False)


async def test_twilio_in_doubt_and_not():
    fake = FakeTwilio()
    await fake.start()
    twilio = TwilioClient(fake.account_sid, fake.auth_token, fake.base_url, timeout_seconds=SHORT)
    unreachable = TwilioClient(
        fake.account_sid, fake.auth_token, f"http://127.0.0.1:{test_twilio.free_port()}"
    )
    try:
        fake.hold_next()
        late = await expect_error(twilio.send_sms(test_twilio.sms()))
        await fake.release()
        refused = await expect_error(unreachable.send_sms(test_twilio.sms()))
    finally:
        await twilio.aclose()
        await unreachable.aclose()
        await fake.close()
    assert (late.code, late.in_doubt) == ("TIMEOUT", True)
    assert len(fake.messages) == 1
    assert (refused.code, refused.in_doubt) == ("CONNECTION", False)


async def test_a_read_answered_too_late_is_not_in_doubt(http, exotel):
    exotel.hold_next()
    error = await expect_error(exotel_client(http, exotel.base_url).check_account([]))
    await exotel.release()
    assert (error.retryable, error.code, error.in_doubt) == (True, "TIMEOUT", False)


async def test_a_ringcentral_token_answered_too_late_sent_nothing(http):
    fake = FakeRingCentral(
        client_id=test_ringcentral.CLIENT_ID,
        client_secret=test_ringcentral.CLIENT_SECRET,
        jwt=test_ringcentral.JWT,
    )
    await fake.start()
    client = RingCentralClient(
        http,
        ManualClock(),
        client_id=test_ringcentral.CLIENT_ID,
        client_secret=test_ringcentral.CLIENT_SECRET,
        jwt=test_ringcentral.JWT,
        api_url=fake.base_url,
        timeout_seconds=SHORT,
    )
    try:
        fake.hold_next()  # the token request
        token_late = await expect_error(client.send_sms(test_ringcentral.sms()))
        await fake.release()
        await client.send_sms(test_ringcentral.sms())  # a token, then the SMS
        fake.hold_next()  # now an SMS itself
        sms_late = await expect_error(client.send_sms(test_ringcentral.sms()))
        await fake.release()
    finally:
        await fake.close()
    assert (token_late.code, token_late.in_doubt) == ("TIMEOUT", False)
    assert (sms_late.code, sms_late.in_doubt) == ("TIMEOUT", True)
    assert len(fake.messages) == 2
