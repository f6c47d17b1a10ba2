"""Provider tests: our real clients against HTTP-level fakes on loopback."""
