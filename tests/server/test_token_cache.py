"""The poll path's token cache (fleet/tokens.py) against a real database, counting the queries it sends:
a fleet's polls must cost the database a bounded number of queries whatever their concurrency (one
revision read per stale period, a query per batch of unseen devices), and revocations, rotations and
removals made anywhere must still reach every process."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time

import pytest
from sqlalchemy import event
from sqlmodel import Session

from otaml.core.config import Settings
from otaml.core.db import init_db, make_engine
from otaml.fleet import credentials
from otaml.fleet import tokens as tokens_module
from otaml.fleet.tokens import TokenCache, Verdict
from otaml.models import DeviceStatus

N = 300
TTL = 0.2


@pytest.fixture
def fleet(tmp_path, database_url):
    """An engine on a fresh database with N enrolled devices: (engine, {device id: token}, queries sent)."""
    settings = Settings(admin_token="x" * 32, data_dir=tmp_path / "db", database_url=database_url)
    engine = make_engine(settings)
    init_db(engine, settings)
    with Session(engine) as session:
        tokens = {d: t for d, t, _ in credentials.enroll_batch(session, [(f"d{i:04d}", []) for i in range(N)], rotate=False)}
        session.commit()
    sent: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda conn, cursor, statement, *a: sent.append(statement))
    yield engine, tokens, sent
    engine.dispose()


def in_own_loop(main) -> None:  # type: ignore[no-untyped-def]
    """asyncio.run(main()) on a thread of its own: the browser tests' sync API keeps a loop running on
    this one."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, main()).result()


async def warm_cache(engine, tokens: dict[str, str]) -> TokenCache:  # type: ignore[no-untyped-def]
    """A cache with a short period that has seen every device once."""
    cache = TokenCache(engine, ttl=TTL)
    assert await poll_all(cache, tokens) == [Verdict.OK] * N
    return cache


def selects(sent: list[str], table: str) -> int:
    return sum(1 for s in sent if s.lstrip().upper().startswith("SELECT") and table in s)


async def poll_all(cache: TokenCache, tokens: dict[str, str]) -> list[Verdict]:
    return [v for v, _ in await asyncio.gather(*(cache.check(d, t) for d, t in tokens.items()))]


def test_a_fleet_of_unseen_devices_costs_a_query_per_batch_not_one_each(fleet):
    engine, tokens, sent = fleet

    async def run() -> None:
        cache = TokenCache(engine, ttl=60)
        assert await poll_all(cache, tokens) == [Verdict.OK] * N
        assert selects(sent, "device") <= 2, sent  # the first revision read and one batch (N < 900)
        sent.clear()
        assert await poll_all(cache, tokens) == [Verdict.OK] * N  # seen: no query at all
        assert await cache.check("d0000", "not-its-token") == (Verdict.WRONG, None)
        assert sent == []
        # Made-up ids: one batch, then remembered as unknown (no query per poll).
        made_up = {f"x{i}": "t" for i in range(N)}
        assert await poll_all(cache, made_up) == [Verdict.WRONG] * N
        assert await poll_all(cache, made_up) == [Verdict.WRONG] * N
        assert selects(sent, "device") == 1, sent

    in_own_loop(run)


def test_a_stale_cache_is_read_again_once_while_polls_go_on(fleet):
    engine, tokens, sent = fleet

    async def run() -> None:
        cache = await warm_cache(engine, tokens)
        await asyncio.sleep(TTL * 1.5)  # stale, but less than three periods: nobody waits for the read
        sent.clear()
        assert await poll_all(cache, tokens) == [Verdict.OK] * N
        await asyncio.sleep(0.1)  # the one background read finishes
        assert selects(sent, "fleet_revision") == 1, sent  # not one per concurrent poll
        assert selects(sent, "device") == 0  # the revision did not move: nothing is read again

    in_own_loop(run)


def test_revocation_rotation_and_removal_reach_a_warm_cache_in_a_few_queries(fleet):
    engine, tokens, sent = fleet

    async def run() -> None:
        cache = await warm_cache(engine, tokens)
        with Session(engine) as session:  # another process changes three devices
            credentials.set_status(session, "d0001", DeviceStatus.REVOKED)
            rotated = credentials.rotate(session, "d0002")
            credentials.remove(session, "d0003")
            session.commit()
        sent.clear()
        deadline = time.monotonic() + 10 * TTL
        while (await cache.check("d0001", tokens["d0001"]))[0] is not Verdict.WRONG:
            assert time.monotonic() < deadline, "the revocation never reached the cache"
            await asyncio.sleep(TTL / 4)
        verdicts = dict(zip(tokens, await poll_all(cache, tokens), strict=True))
        assert verdicts.pop("d0001") is Verdict.WRONG
        assert verdicts.pop("d0003") is Verdict.WRONG
        assert set(verdicts.values()) == {Verdict.OK}  # d0002's old token works until the new one is used
        assert await cache.check("d0002", tokens["d0002"]) == (Verdict.OK, rotated)  # handed over
        assert await cache.check("d0002", rotated) == (Verdict.PROMOTE, None)
        # Every credential was read again in one query per 900 devices, not one per device.
        assert selects(sent, "device_credentials") <= 2, sent

    in_own_loop(run)


def test_a_promotion_during_a_revision_read_is_not_undone_by_it(fleet, monkeypatch):
    """A read that took its snapshot before this process promoted a rotated token must not put the old
    credential back (the device would be refused with the only token it has left)."""
    engine, tokens, _ = fleet

    async def run() -> None:
        cache = await warm_cache(engine, tokens)
        with Session(engine) as session:
            new = credentials.rotate(session, "d0005")
            session.commit()
        await asyncio.sleep(TTL * 1.5)
        await cache.check("d0000", tokens["d0000"])  # the rotation is read
        await asyncio.sleep(0.1)
        assert await cache.check("d0005", tokens["d0005"]) == (Verdict.OK, new)
        assert await cache.check("d0005", new) == (Verdict.PROMOTE, None)
        with Session(engine) as session:  # another change elsewhere: the next read reads every credential
            credentials.set_status(session, "d0006", DeviceStatus.REVOKED)
            session.commit()
        read = tokens_module._read_credentials

        def slow_read(session, device_ids):  # the snapshot is taken, then the promotion lands
            found = read(session, device_ids)
            time.sleep(0.2)
            return found

        monkeypatch.setattr(tokens_module, "_read_credentials", slow_read)
        await asyncio.sleep(TTL * 1.5)
        await cache.check("d0000", tokens["d0000"])  # starts the background read
        await asyncio.sleep(0.05)
        await asyncio.to_thread(cache.promote, "d0005")
        await asyncio.sleep(0.4)
        assert (await cache.check("d0006", tokens["d0006"]))[0] is Verdict.WRONG  # the read was applied
        assert (await cache.check("d0005", new))[0] is Verdict.OK  # not PROMOTE again: the promotion stands
        assert (await cache.check("d0005", tokens["d0005"]))[0] is Verdict.WRONG

    in_own_loop(run)
