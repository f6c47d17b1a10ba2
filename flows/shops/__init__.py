"""Shops: the settings document, its stored form and status, onboarding, Shopify events and
reconciliation, and the sandbox's demo shop."""
