"""Customer conversations: routing every inbound message (compliance keywords, consent,
the open conversation, the merchant's threads)."""
