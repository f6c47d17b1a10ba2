"""Crash: `main.py serve` killed with SIGKILL at random moments while 200 cash-on-delivery orders
are verified at once, and restarted at once with the same configuration each time.

The fake Shopify and the fake Exotel run in this process on loopback; the service runs in its
own process as a user starts it, on a SQLite file (and on PostgreSQL, with Redis when
TEST_REDIS_URL is set). The test plays Shopify (orders/create webhooks, redelivered with the
same webhook id until acknowledged) and the customers: even customers press 1 during the call,
odd ones do not answer; whoever gets the SMS link confirms on its page. A request refused
because the service is down is sent again later, as a provider retries a callback.

At the end every order is confirmed, in our records and in Shopify; no job is dead; no
customer got more than one call or one SMS for their one attempt beyond one per kill. A send
cut short by a kill is recorded `unconfirmed` and never repeated: a call the customer never
got is followed by the SMS link at once, but a link SMS that never reached the provider leaves
the order pending until its answer timer (an hour); such orders are accepted only when that is
exactly what the records show, and are counted in the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import phonenumbers
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from flows.channels.callback_urls import CallbackUrls
from flows.shops.reconcile import RECONCILE_JOB
from providers.sandbox.exotel import FakeExotel
from providers.sandbox.shopify import FakeShopify, order_payload
from storage.models import Call, Job, Message, Order, Shop, Verification

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = "demo.myshopify.com"
SHOPIFY_TOKEN = "shpat_crash_test_token"
SECRET_KEY = "crash-test-secret-key-0123456789abcdef"
ORDERS = 200
SEED = int(os.environ.get("CRASH_TEST_SEED", "20261122"))
DEADLINE_SECONDS = 120.0
RETRY_SECONDS = 0.25  # a client's pause before it sends a refused request again
CONFIRMED_TAG = "cod_confirmed"
LINK = re.compile(r"https?://\S+/v/([A-Za-z0-9_-]+)")
SERVING = "ordertalk serving on http://"
API_KEY_LINE = re.compile(r"API key \(shown once\): (\S+)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


CALLER_ID = "08047110000"


def _e164(number: str) -> str:
    parsed = phonenumbers.parse(number, "IN")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _exotel_account(exotel: FakeExotel) -> dict[str, Any]:
    return {
        "provider": "exotel",
        "subdomain": "api.in.exotel.com",
        "account_sid": exotel.account_sid,
        "api_key": exotel.api_key,
        "api_token": exotel.api_token,
        "numbers": [CALLER_ID],
    }


def _settings_document() -> dict[str, Any]:
    return {
        "contact_phone": "+918040001234",
        # The first call goes out at any hour: the test must not depend on when it runs.
        "verification": {"window_first_call": False},
        # One call, then at once one SMS with the link: no timer has to come due.
        "ivr": {
            "caller_id": CALLER_ID,
            "flow_id": "214512",
            "retries": 0,
            "retry_interval_minutes": 0,
        },
        "fallback": {
            "mode": "sms_link",
            "sms_link": {
                "sender_id": "DEMOSH",
                "dlt_entity_id": "1101",
                "dlt_template_id": "1102",
                "retries": 0,
                "retry_interval_minutes": 0,
            },
        },
    }


class Service:
    """`main.py serve` in its own process; each generation logs to its own files."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env = env
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None
        self.generation = 0
        self.kills = 0

    def _log(self, generation: int, stream: str) -> Path:
        return self.workdir / f"serve-{generation}.{stream}"

    def start(self) -> None:
        self.generation += 1
        with (
            self._log(self.generation, "out").open("wb") as out,
            self._log(self.generation, "err").open("wb") as err,
        ):
            self.process = subprocess.Popen(
                [sys.executable, str(ROOT / "main.py"), "serve"],
                cwd=self.workdir,
                env=self.env,
                stdout=out,
                stderr=err,
            )

    async def ready(self, within: float = 60.0) -> None:
        """Wait for the line that says it serves; fail if the process exits first."""
        assert self.process is not None
        out = self._log(self.generation, "out")
        deadline = time.monotonic() + within
        while SERVING not in out.read_text(errors="replace"):
            code = self.process.poll()
            assert code is None, f"serve exited with {code}:\n{self.stderr(self.generation)}"
            assert time.monotonic() < deadline, f"serve did not start in {within:.0f}s"
            await asyncio.sleep(0.05)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self.kills += 1

    def stop(self) -> int | None:
        """SIGTERM, then the exit status (None if it never started)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise
        return self.process.returncode

    def stderr(self, generation: int | None = None) -> str:
        generations = [generation] if generation else range(1, self.generation + 1)
        return "".join(
            f"--- serve generation {n} ---\n{self._log(n, 'err').read_text(errors='replace')}"
            for n in generations
        )


async def _cli(env: dict[str, str], cwd: Path, *args: str) -> str:
    """Run a `main.py` command to its end; its stdout (the test fails on a non-zero exit)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "main.py"),
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, f"main.py {' '.join(args)}: {err.decode()}"
    return out.decode()


async def _until_taken(send: Any, expected: int, problems: list[str], what: str) -> None:
    """Send until the service takes it: a refused or cut request is sent again later."""
    while True:
        try:
            status, body = await asyncio.wait_for(send(), timeout=15)
        except (aiohttp.ClientError, TimeoutError, OSError):
            await asyncio.sleep(RETRY_SECONDS)
            continue
        if status == expected:
            return
        if status < 500:
            problems.append(f"{what}: HTTP {status} {body[:300]}")
            return
        await asyncio.sleep(RETRY_SECONDS)


@dataclass
class Customers:
    """The customers, played by the test: they answer their calls and press their links."""

    exotel: FakeExotel
    urls: CallbackUrls
    shop_id: int
    browser: aiohttp.ClientSession
    phones: list[str]
    calls_seen: int = 0
    sms_seen: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    pressed: int = 0
    not_answered: int = 0
    links_pressed: int = 0

    def __post_init__(self) -> None:
        self.index = {phone: i for i, phone in enumerate(self.phones)}

    @property
    def answers(self) -> int:
        return self.pressed + self.links_pressed

    def notice(self) -> None:
        """Start an answer to every call and SMS that arrived since the last look."""
        dialled = list(self.exotel.placed_calls.items())  # the calls Exotel accepted, by sid
        for sid, form in dialled[self.calls_seen :]:
            self._spawn(self._answer_call(sid, _e164(form["From"])))
        self.calls_seen = len(dialled)
        messages = self.exotel.sms[self.sms_seen :]
        self.sms_seen += len(messages)
        for sms in messages:
            found = LINK.search(sms.get("Body", ""))
            if found is None:
                self.problems.append(f"an SMS without a link: {sms}")
            else:
                self._spawn(self._press_link(found.group(1)))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _answer_call(self, sid: str, phone: str) -> None:
        customer = self.index.get(phone)
        if customer is None:
            self.problems.append(f"a call to {phone}, who is no customer")
            return
        ended = self.urls.exotel(self.shop_id, "call-status")
        if customer % 2:
            await _until_taken(
                lambda: self.exotel.call_status(ended, call_sid=sid, status="no-answer"),
                200,
                self.problems,
                f"end of call {sid}",
            )
            self.not_answered += 1
            return
        passthru = self.urls.exotel(self.shop_id, "passthru")
        await _until_taken(
            lambda: self.exotel.passthru(
                passthru,
                call_sid=sid,
                call_from=phone,
                call_to="08047110000",
                direction="outbound-dial",
                digits="1",
            ),
            200,
            self.problems,
            f"keypad of call {sid}",
        )
        await _until_taken(
            lambda: self.exotel.call_status(ended, call_sid=sid, status="completed", duration=9),
            200,
            self.problems,
            f"end of call {sid}",
        )
        self.pressed += 1

    async def _press_link(self, token: str) -> None:
        page = f"{self.urls.public_url}/v/{token}"

        async def confirm() -> tuple[int, str]:
            form = {"action": "confirm"}
            async with self.browser.post(page, data=form, allow_redirects=False) as response:
                return response.status, await response.text()

        await _until_taken(confirm, 303, self.problems, f"confirm on /v/{token[:10]}...")
        self.links_pressed += 1


async def _deliver_order(shopify: FakeShopify, endpoint: str, payload: dict[str, Any]) -> int:
    """POST orders/create until acknowledged, always with the same webhook id as Shopify
    redelivers; how many deliveries it took."""
    webhook_id = f"crash-{payload['id']}"
    deliveries = 0
    while True:
        deliveries += 1
        try:
            status = await asyncio.wait_for(
                shopify.send_webhook(
                    endpoint, "orders/create", DOMAIN, payload, webhook_id=webhook_id
                ),
                timeout=15,
            )
        except (aiohttp.ClientError, TimeoutError, OSError):
            status = 0
        if status == 200:
            return deliveries
        assert status == 0 or status >= 500, f"orders/create answered {status}"
        await asyncio.sleep(RETRY_SECONDS)


@dataclass
class Snapshot:
    """Rows of the service's tables (plain rows, read from outside the service)."""

    orders: list[Any]
    verifications: list[Any]
    jobs: list[Any]
    calls: list[Any]
    messages: list[Any]

    def lost_links(self, received: set[str]) -> set[int]:
        """Pending orders whose link SMS a kill cut short before the provider got it: the
        message is `unconfirmed` (never sent again) and no SMS reached the customer's phone.
        Their verification waits for its answer timer, an hour away."""
        cut = {m.order_id for m in self.messages if m.status == "unconfirmed"}
        return {
            order.id
            for order in self.orders
            if order.verification_status == "pending"
            and order.id in cut
            and order.phone not in received
        }


class Records:
    """Reads the service's database from outside; no transaction outlives a read."""

    def __init__(self, url: str) -> None:
        self.engine = create_async_engine(url, poolclass=NullPool)

    async def shop(self) -> Any:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(Shop).limit(1))).first()

    async def snapshot(self, *, jobs: bool = True) -> Snapshot:
        async with self.engine.connect() as conn:

            async def rows(*columns: Any) -> list[Any]:
                return list(await conn.execute(select(*columns)))

            if not jobs:  # the light look of the waiting loop
                return Snapshot(
                    orders=await rows(Order.id, Order.phone, Order.verification_status),
                    verifications=[],
                    jobs=await rows(Job.kind, Job.status, Job.due_at),
                    calls=[],
                    messages=await rows(Message.order_id, Message.status),
                )
            return Snapshot(
                orders=await rows(Order),
                verifications=await rows(Verification),
                jobs=await rows(Job),
                calls=await rows(Call),
                messages=await rows(Message),
            )

    async def close(self) -> None:
        await self.engine.dispose()


def _settled(snapshot: Snapshot, received: set[str]) -> tuple[bool, bool]:
    """(every order decided or explained as a lost link, and no job runs or is due soon)."""
    lost = snapshot.lost_links(received)
    decided = all(
        order.verification_status == "confirmed" or order.id in lost for order in snapshot.orders
    )
    # Retries come due within seconds; the flow's timers (15 min and more) and the periodic
    # reconciliation with Shopify (every 15 min) are not waited for.
    soon = datetime.now(UTC) + timedelta(seconds=20)
    idle = not any(
        job.status == "running"
        or (job.status == "queued" and job.kind != RECONCILE_JOB and _utc(job.due_at) < soon)
        for job in snapshot.jobs
    )
    return decided and len(snapshot.orders) == ORDERS, idle


@pytest.fixture(params=["sqlite", "postgresql"])
def service_database(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(database url, redis url) of a fresh, empty database for the service."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'ordertalk.db'}", ""
    url = request.getfixturevalue("pg_scratch")()
    return url, os.environ.get("TEST_REDIS_URL", "")


async def test_sigkill_at_random_moments_during_200_verifications(
    tmp_path: Path, service_database: tuple[str, str]
):
    database_url, redis_url = service_database
    test_started = time.monotonic()
    rng = random.Random(SEED)
    shopify = FakeShopify(api_key="crash-app-key", api_secret="crash-app-secret")
    exotel = FakeExotel()
    exotel.add_exophone(CALLER_ID)
    await shopify.start()
    await exotel.start()
    shopify.add_shop(DOMAIN, SHOPIFY_TOKEN, name="Demo Store", phone="+91 80 4000 1234")
    port = _free_port()
    public_url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERTALK_")}
    env |= {
        "ORDERTALK_DATABASE__URL": database_url,
        "ORDERTALK_REDIS__URL": redis_url,
        "ORDERTALK_SERVER__PORT": str(port),
        "ORDERTALK_SERVER__PUBLIC_URL": public_url,
        "ORDERTALK_SERVER__LOG_LEVEL": "WARNING",
        "ORDERTALK_SANDBOX__ENABLED": "false",
        "ORDERTALK_SECURITY__SECRET_KEY": SECRET_KEY,
        "ORDERTALK_SHOPIFY__API_KEY": shopify.api_key,
        "ORDERTALK_SHOPIFY__API_SECRET": shopify.api_secret,
        "ORDERTALK_SHOPIFY__ADMIN_URL": shopify.admin_url_template,
        "ORDERTALK_PROVIDERS__EXOTEL__API_URL": exotel.base_url,
        # The test is about crashes, not about the senders' rate limits.
        "ORDERTALK_PROVIDERS__EXOTEL__CALLS_PER_SECOND": "1000",
        "ORDERTALK_PROVIDERS__EXOTEL__MESSAGES_PER_SECOND": "1000",
        # A killed worker's jobs come back within seconds, and failures retry soon.
        "ORDERTALK_JOBS__LEASE_SECONDS": "2",
        "ORDERTALK_JOBS__POLL_SECONDS": "0.2",
        "ORDERTALK_JOBS__BACKOFF_BASE_SECONDS": "0.5",
        "ORDERTALK_JOBS__BACKOFF_MAX_SECONDS": "2",
    }
    service = Service(env, tmp_path)
    records = Records(database_url)
    browser = aiohttp.ClientSession()
    planned_kills = rng.randint(3, 5)
    pauses = [rng.uniform(0.3, 1.5) for _ in range(planned_kills)]
    progress: list[str] = []
    decided_at = settled_at = None
    try:
        # Set up as a merchant does: connect the shop, start the service, save the settings.
        if database_url.startswith("postgresql"):
            await _cli(env, tmp_path, "migrate")
        added = await _cli(
            env, tmp_path, "shop", "add", "--domain", DOMAIN, "--token", SHOPIFY_TOKEN
        )
        found = API_KEY_LINE.search(added)
        assert found, added
        service.start()
        await service.ready()
        deadline = time.monotonic() + 30  # the connect job reads the shop, adds webhooks
        while (shop := await records.shop()) is None or shop.country != "IN":
            assert time.monotonic() < deadline, "the shop was not connected in 30 s"
            await asyncio.sleep(0.1)
        endpoint = f"{public_url}/webhooks/shopify"
        assert ("orders/create", endpoint) in shopify.webhook_subscriptions[DOMAIN]
        merchant = {"Authorization": f"Bearer {found.group(1)}"}
        async with browser.put(
            f"{public_url}/api/v1/shop/settings", json=_settings_document(), headers=merchant
        ) as response:
            assert response.status == 200, await response.text()
        async with browser.post(
            f"{public_url}/api/v1/shop/accounts", json=_exotel_account(exotel), headers=merchant
        ) as response:
            assert response.status == 201, await response.text()
        assert (await records.shop()).status == "installed"

        phones = [f"+9198{10_000_000 + i:08d}" for i in range(ORDERS)]
        placed = datetime.now(UTC).isoformat(timespec="seconds")
        payloads = []
        for phone in phones:
            payload = order_payload(created_at=placed, processed_at=placed, updated_at=placed)
            for part in ("shipping_address", "billing_address", "customer"):
                payload[part] = {**payload[part], "phone": phone}
            shopify.add_order(DOMAIN, payload)
            payloads.append(payload)
        customers = Customers(
            exotel, CallbackUrls(public_url, SECRET_KEY), shop.id, browser, phones
        )
        all_decided = asyncio.Event()

        def sends() -> int:
            """Requests the service made to the providers so far."""
            return len(exotel.calls) + len(exotel.sms) + len(shopify.requests)

        async def killer() -> None:
            for kill, pause in enumerate(pauses):
                if kill:
                    # Each later kill lands while the restarted service is at work again:
                    # a random while after its first request to a provider.
                    before = sends()
                    while True:  # the fakes record requests in lists: look at them often
                        if sends() > before or all_decided.is_set():
                            break
                        await asyncio.sleep(0.01)
                await asyncio.sleep(pause)
                if all_decided.is_set():
                    return
                progress.append(
                    f"kill {kill + 1} at {time.monotonic() - started:.1f}s: {len(exotel.calls)} "
                    f"calls, {len(exotel.sms)} SMS, {customers.answers} answers so far"
                )
                service.kill()
                service.start()
                await service.ready()

        # 200 orders at once, the customers answering, and the kills.
        started = time.monotonic()
        webhooks = asyncio.gather(*(_deliver_order(shopify, endpoint, p) for p in payloads))
        kills = asyncio.create_task(killer())
        while time.monotonic() - started < DEADLINE_SECONDS:
            received = {_e164(sms["To"]) for sms in exotel.sms}
            customers.notice()  # after: a link counted as received has its customer at work
            decided, idle = _settled(await records.snapshot(jobs=False), received)
            if decided and decided_at is None:
                decided_at = time.monotonic() - started
                all_decided.set()
            if decided and idle and kills.done() and webhooks.done() and not customers.tasks:
                settled_at = time.monotonic() - started
                break
            await asyncio.sleep(0.2)
        for task in (kills, webhooks, *customers.tasks):
            task.cancel()
        deliveries = await webhooks if webhooks.done() and not webhooks.cancelled() else []
        with contextlib.suppress(asyncio.CancelledError):
            await kills
        await asyncio.gather(webhooks, *customers.tasks, return_exceptions=True)
        snapshot = await records.snapshot()
    finally:
        code = service.stop()
        await browser.close()
        await records.close()
        await exotel.close()
        await shopify.close()

    # The figures ---------------------------------------------------------------------------
    calls = Counter(_e164(form["From"]) for form in exotel.calls)
    sms = Counter(_e164(form["To"]) for form in exotel.sms)
    duplicate_calls = sum(n - 1 for n in calls.values())
    duplicate_sms = sum(n - 1 for n in sms.values())
    lost = snapshot.lost_links(set(sms))
    statuses = Counter(order.verification_status for order in snapshot.orders)
    decided_by = Counter(v.data.get("decided_by", "") for v in snapshot.verifications)
    jobs = Counter(job.status for job in snapshot.jobs)
    rerun = Counter(
        f"{job.kind} ({job.last_error.split(':')[0]})" for job in snapshot.jobs if job.attempts > 1
    )

    def seconds(moment: float | None) -> str:
        return "-" if moment is None else f"{moment:.1f}s"

    print(f"\ncrash test on {database_url.split(':')[0]}, seed {SEED}, redis {bool(redis_url)}")
    for line in progress:
        print(f"  {line}")
    print(
        f"  kills {service.kills}; every order decided after {seconds(decided_at)}, jobs "
        f"settled after {seconds(settled_at)}; {sum(deliveries)} webhook deliveries"
    )
    print(
        f"  calls {calls.total()} to {len(calls)} customers, duplicates {duplicate_calls}; "
        f"SMS {sms.total()} to {len(sms)} customers, duplicates {duplicate_sms}"
    )
    print(
        f"  customers: {customers.pressed} pressed 1, {customers.not_answered} did not answer, "
        f"{customers.links_pressed} confirmed on the page"
    )
    print(f"  orders {dict(statuses)}, decided by {dict(decided_by)}, lost links {len(lost)}")
    print(f"  call rows {dict(Counter(call.status for call in snapshot.calls))}")
    print(f"  message rows {dict(Counter(message.status for message in snapshot.messages))}")
    print(f"  jobs {dict(jobs)}; run more than once: {dict(rerun)}")
    print(f"  the whole test took {time.monotonic() - test_started:.1f}s")

    # The verdicts --------------------------------------------------------------------------
    errors = service.stderr()
    assert code == 0, errors
    assert "Traceback" not in errors, errors
    assert service.kills >= 3, progress  # fewer only if every order was decided before
    assert customers.problems == []
    assert settled_at is not None, f"not settled in {DEADLINE_SECONDS:.0f}s: {dict(statuses)}"
    assert len(snapshot.orders) == ORDERS
    assert statuses == +Counter(confirmed=ORDERS - len(lost), pending=len(lost))
    for verification in snapshot.verifications:
        if verification.order_id in lost:  # it waits for an answer; its timer will end it
            state = verification.data
            assert state["methods"][state["stage"]] == "sms_link", state
            assert verification.next_action_at is not None, state
    confirmed = {o.shopify_order_id for o in snapshot.orders if o.id not in lost}
    for payload in payloads:
        if str(payload["id"]) in confirmed:
            assert CONFIRMED_TAG in shopify.tags(DOMAIN, payload["id"]), payload["name"]
    # Who confirmed: a customer who never pressed 1 cannot have confirmed by the call.
    customer_of = {phone: i for i, phone in enumerate(phones)}
    phone_of = {order.id: order.phone for order in snapshot.orders}
    for verification in snapshot.verifications:
        if verification.order_id not in lost:
            by = verification.data["decided_by"]
            even = customer_of[phone_of[verification.order_id]] % 2 == 0
            assert by in (("ivr", "sms_link") if even else ("sms_link",)), verification.data
    assert jobs["dead"] == 0, [(j.kind, j.last_error) for j in snapshot.jobs if j.status == "dead"]
    # One attempt per customer (no IVR or SMS retries): one call and at most one SMS each,
    # plus at most one repeated send per kill over the whole run.
    assert set(calls) <= set(phones) and set(sms) <= set(phones)
    assert max(calls.values(), default=0) <= 1 + service.kills
    assert max(sms.values(), default=0) <= 1 + service.kills
    assert duplicate_calls <= service.kills, calls.most_common(5)
    assert duplicate_sms <= service.kills, sms.most_common(5)
