"""Fake outside parties (HTTP-level) that only the tests run on loopback (Twilio, RingCentral);
the ones the sandbox also runs live in `providers/sandbox/`."""
