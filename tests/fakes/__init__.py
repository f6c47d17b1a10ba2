"""Fake outside parties (HTTP-level) that only the tests run on loopback (RingCentral); the ones
the sandbox also runs live in `providers/sandbox/`."""
