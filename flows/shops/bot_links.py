"""Which chats act for a shop, and in what role: linking a chat with a one-time code, the
owner's invitations of agents, and their removal.

The owner's code comes with the shop (`storage.shops.issue_secrets`); an owner invites agents
with codes of their own. Every code is used once and only its SHA-256 is kept; a used code is
remembered as used, so the merchant is told that rather than "wrong". A chat acts for one
shop. Every query here is scoped to the shop of the chat that asks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from clock import Clock
from storage.db import Database
from storage.models import BotInvite, BotLink, Shop
from storage.shops import BOT_LINK_TTL, digest, new_link_code

OWNER, AGENT = "owner", "agent"
INVITE_TTL = BOT_LINK_TTL


class NotAllowed(Exception):
    """The chat's role may not do this (only an owner manages agents)."""


@dataclass(frozen=True)
class ChatLink:
    """A chat acting for a shop."""

    link_id: int
    shop_id: int
    shop_name: str
    chat_id: int
    role: str

    @property
    def manages_agents(self) -> bool:
        """Whether this chat may invite and remove agents: the owner's only."""
        return self.role == OWNER

    @property
    def sees_callback_urls(self) -> bool:
        """Whether this chat is shown the shop's callback URLs (they carry its secret path
        tokens): the owner's only."""
        return self.role == OWNER


class Outcome(StrEnum):
    LINKED = "linked"
    ALREADY_LINKED = "already_linked"  # this chat already acts for the code's shop
    LINKED_ELSEWHERE = "linked_elsewhere"  # this chat acts for another shop
    USED = "used"
    EXPIRED = "expired"
    WRONG = "wrong"


@dataclass(frozen=True)
class Linking:
    outcome: Outcome
    link: ChatLink | None = None  # the chat's link: new, or the one it already had


@dataclass(frozen=True)
class Invitation:
    code: str
    expires_at: datetime


@dataclass(frozen=True)
class Agent:
    link_id: int
    chat_id: int
    name: str
    linked_at: datetime


def normal_code(code: str) -> str:
    """Codes are read as typed with spaces, dashes or lower case."""
    return "".join(ch for ch in code.upper() if ch.isalnum())


class ChatLinks:
    """The use cases of chat links, for the bot (and any other surface)."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def of_chat(self, chat_id: int) -> ChatLink | None:
        """The shop and role this chat acts for; None for a chat no shop has linked."""
        async with self.db.sessions() as session:
            return await _link_of_chat(session, chat_id)

    async def link(self, chat_id: int, user_id: int | None, name: str, code: str) -> Linking:
        """Link the chat to the shop of a one-time `code`, in the code's role (using it up)."""
        code_hash = digest(normal_code(code))
        now = self.clock.now()
        async with self.db.transaction() as session:
            current = await _link_of_chat(session, chat_id)
            shop = await session.scalar(
                select(Shop).where(Shop.bot_link_code_hash == code_hash).with_for_update()
            )
            invite = None
            if shop is not None:
                role, expires_at = OWNER, shop.bot_link_expires_at
            else:
                invite = await session.scalar(
                    select(BotInvite).where(BotInvite.code_hash == code_hash).with_for_update()
                )
                if invite is None:
                    return Linking(Outcome.WRONG, current)
                if invite.used_at is not None:
                    return Linking(Outcome.USED, current)
                shop = await session.get(Shop, invite.shop_id)
                assert shop is not None  # invitations go with their shop
                role, expires_at = invite.role, invite.expires_at
            if expires_at is None or expires_at <= now:
                return Linking(Outcome.EXPIRED, current)
            if current is not None:
                same = current.shop_id == shop.id
                return Linking(
                    Outcome.ALREADY_LINKED if same else Outcome.LINKED_ELSEWHERE, current
                )
            if invite is None:
                # The shop's own code is kept as a used invitation and leaves the shop.
                session.add(
                    BotInvite(
                        shop_id=shop.id,
                        code_hash=code_hash,
                        role=OWNER,
                        expires_at=expires_at,
                        used_at=now,
                        used_by=chat_id,
                        created_at=now,
                    )
                )
                shop.bot_link_code_hash = None
                shop.bot_link_expires_at = None
            else:
                invite.used_at, invite.used_by = now, chat_id
            row = BotLink(
                shop_id=shop.id,
                chat_id=chat_id,
                user_id=user_id,
                role=role,
                name=name[:128],
                created_at=now,
            )
            session.add(row)
            await session.flush()
            return Linking(Outcome.LINKED, ChatLink(row.id, shop.id, shop.name, chat_id, role))

    async def invite(self, link: ChatLink) -> Invitation:
        """A new one-time code that links a chat to the owner's shop as an agent."""
        if not link.manages_agents:
            raise NotAllowed("only the shop's owner invites agents")
        code, now = new_link_code(), self.clock.now()
        expires_at = now + INVITE_TTL
        async with self.db.transaction() as session:
            session.add(
                BotInvite(
                    shop_id=link.shop_id,
                    code_hash=digest(code),
                    role=AGENT,
                    invited_by=link.chat_id,
                    expires_at=expires_at,
                    created_at=now,
                )
            )
        return Invitation(code, expires_at)

    async def agents(self, link: ChatLink) -> list[Agent]:
        """The agents of the chat's shop, oldest first."""
        if not link.manages_agents:
            raise NotAllowed("only the shop's owner manages agents")
        async with self.db.sessions() as session:
            rows = await session.scalars(
                select(BotLink)
                .where(BotLink.shop_id == link.shop_id, BotLink.role == AGENT)
                .order_by(BotLink.id)
            )
            return [Agent(r.id, r.chat_id, r.name, r.created_at) for r in rows]

    async def remove_agent(self, link: ChatLink, agent_link_id: int) -> Agent | None:
        """Unlink an agent of the chat's shop; None if the shop has no such agent (now)."""
        if not link.manages_agents:
            raise NotAllowed("only the shop's owner removes agents")
        async with self.db.transaction() as session:
            row = await session.scalar(
                select(BotLink).where(
                    BotLink.id == agent_link_id,
                    BotLink.shop_id == link.shop_id,
                    BotLink.role == AGENT,
                )
            )
            if row is None:
                return None
            await session.execute(delete(BotLink).where(BotLink.id == row.id))
            return Agent(row.id, row.chat_id, row.name, row.created_at)


async def _link_of_chat(session: AsyncSession, chat_id: int) -> ChatLink | None:
    row = (
        await session.execute(
            select(BotLink.id, BotLink.shop_id, Shop.name, BotLink.role)
            .join(Shop, Shop.id == BotLink.shop_id)
            .where(BotLink.chat_id == chat_id)
            .order_by(BotLink.id)
            .limit(1)
        )
    ).first()
    if row is None:
        return None
    link_id, shop_id, shop_name, role = row
    return ChatLink(link_id, shop_id, shop_name, chat_id, role)
