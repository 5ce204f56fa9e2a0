"""Recommendations benchmark: how often Kairos's recommender shows the product a reader
buys next, against popular-only and recent-views-only, and what co-occurrence costs
ingest.

    .venv/bin/python bench/recs.py                       # 3,000 readers, embedded store
    .venv/bin/python bench/recs.py --readers 500 --rounds 1   # a smoke run
    .venv/bin/python bench/recs.py --redis               # the same on a redis-server of its own

The event log is generated from hidden tastes (`--seed`, default 7; the same seed gives
the same log):

- `--products` (default 600) products in `--clusters` (default 30) clusters of equal
  size ("tastes": lighting, kitchen, ...); within a cluster, product r (0-based) is
  chosen with weight 1/(r+1)^0.8. `BEST_SELLERS` (8) products, spread over clusters,
  are also chosen from anywhere: each pick is a best-seller with probability
  `BEST_SELLER_P` (0.15), so they are popular with every taste.
- each reader has two tastes, weighted 0.7 and 0.3, and 3-8 sessions 6-48 hours apart
  within the last 30 days. A session stays in one cluster (a taste by weight, or any
  cluster with probability `NOISE` 0.1): 2-6 product views a minute or two apart; with
  probability 0.35 the reader carts one of the viewed products and buys it.
- held out: each reader's next purchase, made in a session after the log: a product of
  one of their tastes (chosen as a session's are) that they have not bought yet. Nothing
  of that session is in the log.

The log is replayed in time order through the real ingest (`Ingest.ingest` of an app
built by `create_app`, its lifespan running, in requests of 100 events as an API key
would send them), on the embedded store or, with `--redis`, on a redis-server the bench
starts. The catalog's `popularity` is each product's purchases and views in the log
(what a shop's best-seller list knows). Then, for every reader, four products from:

  kairos   `ReaderData.recommendations`: neighbours of recent views and purchases
           (cosine co-occurrence, by recency), recent views, segment, popular
  popular  the catalog's most popular (the same exclusions: cart, bought)
  recent   the reader's most recent views not bought, topped up with popular

and hit-rate@4: the share of readers whose held-out purchase is among them. Ingest
cost: the CPU of the whole replay (until the co-occurrence counts are stored) per
event — this process's, plus redis-server's with `--redis`; CPU rather than wall time,
which a shared machine moves by tens of per cent — with
`KAIROS_RECS_COOCCURRENCE` on and off, each on a fresh store, `--rounds` times
alternately (default 3; the median is printed). Exit status: 0 when the bench ran,
1 when something broke, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import BenchError, Processes, base_env, cpu_seconds, run_main, start_redis

from app.app import create_app
from app.events.clock import format_ms
from app.settings import Settings

BEST_SELLERS = 8
BEST_SELLER_P = 0.15
NOISE = 0.1
BUY_P = 0.35
BATCH = 100
K = 4
HOUR_MS = 3_600_000


@dataclass
class Log:
    products: list[str]
    events: list[dict[str, Any]] = field(default_factory=list)
    held_out: dict[str, str] = field(default_factory=dict)  # reader -> sku bought next


def generate(seed: int, readers: int, products: int, clusters: int) -> Log:
    """The event log and each reader's held-out purchase (see the module's docstring)."""
    rng = random.Random(seed)
    skus = [f"P-{i:04d}" for i in range(products)]
    size = products // clusters
    members = [skus[c * size : (c + 1) * size] for c in range(clusters)]
    weights = [1 / (r + 1) ** 0.8 for r in range(size)]
    best = [members[c * clusters // BEST_SELLERS][size // 2] for c in range(BEST_SELLERS)]
    log = Log(skus)
    now = int(time.time() * 1000)

    def pick(cluster: int) -> str:
        if rng.random() < BEST_SELLER_P:
            return rng.choice(best)
        return rng.choices(members[cluster], weights)[0]

    def session_cluster(tastes: list[int]) -> int:
        if rng.random() < NOISE:
            return rng.randrange(clusters)
        return rng.choices(tastes, (0.7, 0.3))[0]

    n = 0
    for r in range(readers):
        user = f"r{r:05d}"
        tastes = rng.sample(range(clusters), 2)
        at = now - 30 * 24 * HOUR_MS + rng.randrange(5 * 24 * HOUR_MS)
        bought: set[str] = set()
        for _ in range(rng.randint(3, 8)):
            cluster = session_cluster(tastes)
            viewed = []
            for _ in range(rng.randint(2, 6)):
                sku = pick(cluster)
                viewed.append(sku)
                at += rng.randint(30_000, 120_000)
                log.events.append(_event(n := n + 1, user, at, "product_view", sku=sku))
            if rng.random() < BUY_P:
                sku = rng.choice(viewed)
                at += 60_000
                log.events.append(_event(n := n + 1, user, at, "add_to_cart", sku=sku))
                at += 60_000
                item = {"sku": sku, "qty": 1, "price": 10.0}
                log.events.append(
                    _event(
                        n := n + 1, user, at, "purchase", items=[item], total=10.0, currency="EUR"
                    )
                )
                bought.add(sku)
            at += rng.randint(6, 48) * HOUR_MS
        for _ in range(100):
            target = pick(session_cluster(tastes))
            if target not in bought:
                log.held_out[user] = target
                break
    log.events.sort(key=lambda e: e["ts"])
    return log


def _event(n: int, user: str, at: int, kind: str, **properties: Any) -> dict[str, Any]:
    return {
        "event_id": f"bench-{n}",
        "type": kind,
        "user_id": user,
        "ts": format_ms(at),
        "properties": properties,
    }


def popularity(log: Log) -> dict[str, float]:
    counts = dict.fromkeys(log.products, 0.0)
    for event in log.events:
        if event["type"] == "product_view":
            counts[event["properties"]["sku"]] += 1
        elif event["type"] == "purchase":
            counts[event["properties"]["items"][0]["sku"]] += 3
    return counts


@dataclass
class Run:
    us_per_event: float  # CPU: this process's, plus redis-server's with --redis
    events_per_s: float  # wall clock
    hits: dict[str, float] = field(default_factory=dict)


async def replay(
    log: Log, env: dict[str, str], *, evaluate: bool, redis_pid: int | None = None
) -> Run:
    settings = Settings.from_env(env)
    app = create_app(settings)
    services = app.state.services
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    try:
        catalog = [
            {"sku": s, "title": s, "price": 10.0, "currency": "EUR", "popularity": p}
            for s, p in popularity(log).items()
        ]
        await services.stores.catalog.put_products(catalog)
        events = log.events
        start = time.perf_counter()
        cpu = _cpu(redis_pid)
        for i in range(0, len(events), BATCH):
            result = await services.ingest.ingest(events[i : i + BATCH], trusted=True)
            if result.rejected or result.accepted != len(events[i : i + BATCH]):
                raise BenchError(f"ingest refused events: {result.body()}")
        # Stored now rather than at the task's next turn (an in-process replay never
        # yields to it), so no idle wait is timed.
        await services.cooccurrence.flush()
        await services.cooccurrence.drained()
        elapsed = time.perf_counter() - start
        run = Run((_cpu(redis_pid) - cpu) / len(events) * 1e6, len(events) / elapsed)
        lost = sum(c.value for c in services.metrics.recs_lost.children.values())
        if lost:
            raise BenchError(f"co-occurrence of {lost:.0f} events lost")
        if evaluate:
            run.hits = await hit_rates(services, log)
        return run
    finally:
        await lifespan.__aexit__(None, None, None)


async def hit_rates(services: Any, log: Log) -> dict[str, float]:
    reader = services.reader
    hits = {"kairos": 0, "popular": 0, "recent": 0}
    loop = asyncio.get_running_loop()
    for user, target in log.held_out.items():
        profile = await services.stores.profiles.get(user) or {}
        deadline = loop.time() + 5.0
        kairos = await reader.recommendations(profile, K, deadline)
        cold = {**profile, "consent": {"personalization": False}, "recent_views": []}
        popular = await reader.recommendations(cold, K, deadline)
        owned = {i["sku"] for p in profile.get("purchases") or [] for i in p["items"]}
        owned |= {line["sku"] for line in profile.get("cart") or []}
        recent = [v["sku"] for v in profile.get("recent_views") or [] if v["sku"] not in owned]
        recent += [p["sku"] for p in popular if p["sku"] not in recent]
        for name, skus in (
            ("kairos", [i["sku"] for i in kairos]),
            ("popular", [i["sku"] for i in popular]),
            ("recent", recent[:K]),
        ):
            hits[name] += target in skus
    return {name: count / len(log.held_out) for name, count in hits.items()}


def bench(args: argparse.Namespace) -> int:
    log = generate(args.seed, args.readers, args.products, args.clusters)
    views = sum(e["type"] == "product_view" for e in log.events)
    print(
        f"log: seed {args.seed}, {args.readers} readers, {args.products} products in "
        f"{args.clusters} clusters, {len(log.events)} events ({views} views), "
        f"{len(log.held_out)} held-out purchases"
    )
    procs = Processes()
    with tempfile.TemporaryDirectory(prefix="kairos-bench-recs-") as tmp:
        try:
            redis_port = redis_pid = None
            if args.redis:
                proc, redis_port = start_redis(procs, Path(tmp), None)
                redis_pid = proc.pid
            on: list[Run] = []
            off: list[Run] = []
            for round_ in range(args.rounds):
                for enabled, runs in (("true", on), ("false", off)):
                    env = {
                        **base_env(),
                        "KAIROS_ENV": "test",
                        "KAIROS_SECRET_KEYS": "bench-secret-key-0123456789-abcdefghijkl",
                        "KAIROS_API_KEYS": "bench-api-key-0123456789",
                        "KAIROS_DEMO_DATA": "false",
                        "KAIROS_LOG_LEVEL": "WARNING",
                        "KAIROS_RECS_COOCCURRENCE": enabled,
                    }
                    if redis_port is not None:
                        db = len(on) + len(off)
                        env["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/{db % 16}"
                        _flush(redis_port, db % 16)
                    evaluate = round_ == 0 and enabled == "true"
                    run = asyncio.run(replay(log, env, evaluate=evaluate, redis_pid=redis_pid))
                    runs.append(run)
                    state = "on " if enabled == "true" else "off"
                    print(
                        f"  round {round_ + 1} co-occurrence {state}: {run.us_per_event:6.1f} "
                        f"CPU µs/event, {run.events_per_s:8,.0f} events/s (wall)"
                    )
        finally:
            procs.stop_all()
    hits = on[0].hits
    print(f"\nhit-rate@{K} on each reader's next purchase ({len(log.held_out)} readers):")
    for name, what in (
        ("kairos", "Kairos: neighbours of views and purchases, recent views, popular"),
        ("popular", "popular only"),
        ("recent", "recent views only (then popular)"),
    ):
        print(f"  {name:8} {hits[name]:6.3f}   {what}")
    ratio = hits["kairos"] / hits["popular"] if hits["popular"] else float("inf")
    verdict = "PASS" if ratio >= 2 else "BELOW"
    print(f"  kairos / popular = {ratio:.2f}  (target >= 2: {verdict})")
    if hits["recent"]:
        print(f"  kairos / recent  = {hits['kairos'] / hits['recent']:.2f}")
    on_us = statistics.median(r.us_per_event for r in on)
    off_us = statistics.median(r.us_per_event for r in off)
    store = "redis" if args.redis else "embedded"
    cpu = "this process's and redis-server's" if args.redis else "this process's"
    print(f"\ningest ({store} store, requests of {BATCH}, medians of {args.rounds}; {cpu} CPU):")
    print(f"  co-occurrence on   {on_us:6.1f} µs/event  {1e6 / on_us:8,.0f} events per CPU-s")
    print(f"  co-occurrence off  {off_us:6.1f} µs/event  {1e6 / off_us:8,.0f} events per CPU-s")
    print(f"  cost of co-occurrence: {on_us - off_us:+.1f} µs/event ({on_us / off_us - 1:+.0%})")
    return 0


def _cpu(redis_pid: int | None) -> float:
    """CPU seconds used so far: on a shared machine, steadier than wall time."""
    return time.process_time() + (cpu_seconds(redis_pid) if redis_pid is not None else 0.0)


def _flush(port: int, db: int) -> None:
    import redis

    with redis.Redis(host="127.0.0.1", port=port, db=db) as client:
        client.flushdb()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--readers", type=int, default=3000)
    parser.add_argument("--products", type=int, default=600)
    parser.add_argument("--clusters", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--redis", action="store_true", help="a redis-server of its own")
    return run_main(bench, parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
