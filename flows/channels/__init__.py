"""Channels: which provider account carries a message or call, sending it, what the
providers' callbacks report, and the URLs they call back."""
