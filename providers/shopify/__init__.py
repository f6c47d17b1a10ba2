"""Shopify: webhook and OAuth signature checks, the Admin GraphQL client, and order mapping."""
