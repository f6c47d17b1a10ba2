"""Named leases in the database: one holder at a time among any number of processes, kept by
renewing before it expires, taken over by another once its holder stops renewing.

A lease also carries the position its holder reached (the next Telegram update to read), so
the next holder resumes there instead of handling what was handled already.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, update

from storage.db import Database
from storage.models import BotLease


async def hold(
    db: Database,
    name: str,
    holder: str,
    now: datetime,
    ttl: timedelta,
    position: int | None = None,
) -> int | None:
    """Take or renew lease `name` for `holder` until `now + ttl`, when it is free, expired or
    the holder's already; record `position` if given. Returns the lease's position, or None
    when another holder has it."""
    values: dict[str, object] = {"holder": holder, "expires_at": now + ttl}
    if position is not None:
        values["next_update_id"] = position
    async with db.transaction() as session:
        taken = await session.scalar(
            update(BotLease)
            .where(
                BotLease.name == name,
                or_(BotLease.holder == holder, BotLease.expires_at <= now),
            )
            .values(**values)
            .returning(BotLease.next_update_id)
        )
        if taken is not None:
            return taken
        created = await session.scalar(
            db.insert(BotLease)
            .values(name=name, next_update_id=position or 0, **values)
            .on_conflict_do_nothing(index_elements=["name"])
            .returning(BotLease.next_update_id)
        )
        return created


async def release(db: Database, name: str, holder: str, now: datetime) -> None:
    """Let the lease go now (if `holder` has it), so another process need not wait it out."""
    async with db.transaction() as session:
        await session.execute(
            update(BotLease)
            .where(BotLease.name == name, BotLease.holder == holder)
            .values(expires_at=now)
        )
