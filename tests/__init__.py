"""The test suite: unit, integration against HTTP-level fakes, and process tests."""
