"""The verification journeys' shop and fakes (tests/web/conftest.py), with their settings."""

from tests.web.test_verification_journeys import settings  # noqa: F401 (fixture)
