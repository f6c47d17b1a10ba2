"""Orders: actions on Shopify orders (tags, cancel) and the merchant's reports."""
