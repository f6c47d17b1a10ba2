"""Alerts pushed to a shop's linked chats: what to tell whom (`decide`, pure), the periodic
scan that turns committed events into delivery jobs (`scan`), and what a chat asks of them:
its alerts on or off, and a click-to-call to a customer who asked for a callback (`desk`)."""
