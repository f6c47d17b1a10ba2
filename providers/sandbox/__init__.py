"""The outside world, simulated: a fake Shopify, Twilio, Exotel, Gupshup and Telegram Bot API
that speak the real wire formats on loopback, and the world the sandbox plays with them (the
demo shop's orders, the customers' phones, the merchant's chat). The tests use the same fakes.
Never imports `flows`.
"""
