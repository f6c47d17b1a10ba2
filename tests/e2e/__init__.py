"""End-to-end tests: processes started as a user would start them."""
