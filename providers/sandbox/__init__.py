"""The outside world, simulated: a fake Shopify, Twilio, Exotel and Gupshup that speak the real
wire formats on loopback, and the world the sandbox plays with them (the demo shop's orders, the
customers' phones). The tests use the same fakes. Never imports `flows`.
"""
