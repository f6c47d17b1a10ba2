"""The domain: conversation flows and use cases, written as pure state machines.

A flow is `step(state, event, settings, now) -> (state, effects)`; the runtime stores the new
state and turns every effect into a durable job in one transaction. Never imports aiohttp
or aiogram.
"""
