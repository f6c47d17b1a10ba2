"""Customer conversations: compliance keywords and consent."""
