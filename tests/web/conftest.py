"""The journey fixtures (a shop, its fake providers and the real app and worker) for every
module here that drives whole verifications; their definitions live with the journeys."""

from tests.web.test_verification_journeys import (  # noqa: F401 (fixtures)
    browser,
    exotel,
    fake,
    gupshup,
    journey,
    port,
    server,
    urls,
)
