"""`python -m tests.stress` (`make stress`): takeover rounds on a fresh embedded broker
(`--broker apache-kafka` for Apache Kafka 3.9.1, or `--broker kafka://HOST:PORT`), keyed and
unkeyed alternately, each round's seed printed so a failing one can be run again alone
with `--seed N --rounds 1`. `--exactly-once` runs the workers with that guarantee (Apache
Kafka) and allows no result twice; `--stateless` a filter and a map instead of windows."""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from typing import Any

from streams.runtime.broker import EmbeddedBroker
from tests.stress.takeover import Plan, run_round


async def main(args: argparse.Namespace) -> int:
    first = args.seed if args.seed is not None else random.randrange(1_000_000)
    broker: Any = None
    url = args.broker
    if url is None:
        broker = EmbeddedBroker().start()
        url = broker.url
    elif url == "apache-kafka":
        from tests.brokers.apache_kafka import ApacheKafka

        broker = ApacheKafka()
        broker.start()
        url = broker.url
    began = time.monotonic()
    exact = 0
    failed: list[str] = []
    try:
        for number in range(args.rounds):
            keyed = number % 2 == 1 if args.keyed is None else args.keyed
            plan = Plan.from_seed(
                first + number,
                keyed,
                events=args.events,
                stateless=args.stateless,
                exactly_once=args.exactly_once,
            )
            report = await run_round(url, plan)
            exact += report.exact
            if not report.exact:
                failed.append(report.line())
            print(f"[{number + 1}/{args.rounds}] {report.line()}", flush=True)
    finally:
        if broker is not None:
            broker.close() if hasattr(broker, "close") else broker.stop()
    print(
        f"\n{args.rounds} rounds in {time.monotonic() - began:.0f}s: {exact} exact, "
        f"{args.rounds - exact} not (first seed {first})",
        flush=True,
    )
    for line in failed:
        print(f"  {line}")
    return 0 if exact == args.rounds else 1


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.stress", description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, help="first round's seed (default: random)")
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument(
        "--broker",
        help="kafka://HOST:PORT, or apache-kafka for a fresh Apache Kafka (default: a fresh "
        "embedded broker)",
    )
    parser.add_argument("--exactly-once", action="store_true", help="guarantee: exactly_once")
    parser.add_argument("--stateless", action="store_true", help="filter + map, no windows")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--keyed", dest="keyed", action="store_true", default=None)
    group.add_argument("--unkeyed", dest="keyed", action="store_false")
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
