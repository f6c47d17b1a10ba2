"""The outside world: Shopify, Twilio, Exotel, Gupshup, RingCentral and the sandbox.

Each provider module holds its outbound client, its inbound webhook parser and its signature
check, behind the protocols of `providers/base.py`. Never imports `flows`.
"""
