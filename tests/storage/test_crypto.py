"""Provider credentials are stored only as ciphertext keyed from security.secret_key."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from storage.crypto import SecretBox, SecretBoxError
from storage.models import Shop

KEY = "k" * 40
CREDENTIALS = {"twilio": {"account_sid": "AC123", "auth_token": "very-secret-token"}}


def test_seal_and_open_round_trip():
    box = SecretBox(KEY)
    sealed = box.seal(CREDENTIALS)
    assert "very-secret-token" not in sealed and "AC123" not in sealed
    assert box.open(sealed) == CREDENTIALS
    assert box.open("") == {}


def test_another_key_or_altered_ciphertext_is_refused():
    sealed = SecretBox(KEY).seal(CREDENTIALS)
    with pytest.raises(SecretBoxError):
        SecretBox("x" * 40).open(sealed)
    with pytest.raises(SecretBoxError):
        SecretBox(KEY).open(sealed[:-4] + "AAAA")


async def test_credentials_at_rest_are_ciphertext(db, clock):
    box = SecretBox(KEY)
    async with db.transaction() as session:
        session.add(
            Shop(
                domain="demo.myshopify.com",
                credentials=box.seal(CREDENTIALS),
                created_at=clock.now(),
                updated_at=clock.now(),
            )
        )
    async with db.sessions() as session:
        raw = await session.scalar(text("SELECT credentials FROM shops"))
    assert "very-secret-token" not in raw
    assert box.open(raw) == CREDENTIALS
