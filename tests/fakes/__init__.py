"""Fake outside parties (HTTP-level) that tests and the sandbox run on loopback."""
