"""Realistic sample payments for the demo, the tests and the benchmarks.

A generator, not a committed file: `payments(n, seed=...)` yields JSON lines, reproducible
for a seed. About `malformed_ratio` of them are broken the ways real feeds break: invalid
JSON, missing fields, amounts as words, unknown currencies, a card number sent as a number.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

CURRENCIES = ("EUR", "USD", "GBP", "CHF", "JPY")
_CURRENCY_WEIGHTS = (50, 30, 12, 5, 3)
COUNTRIES = ("DE", "FR", "NL", "ES", "IT", "US", "GB", "CH", "PL", "SE")
MERCHANTS = (
    "amazon",
    "zalando",
    "bol",
    "ikea",
    "mediamarkt",
    "rewe",
    "carrefour",
    "lidl",
    "spotify",
    "netflix",
    "uber",
    "booking",
    "airbnb",
    "apple",
    "steam",
    "shell",
    "deutsche-bahn",
    "ryanair",
    "decathlon",
    "hm",
)
TIERS = ("basic", "gold", "platinum")
DEMO_START = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def user_id(number: int) -> str:
    return f"u{number:05d}"


def payment(rng: random.Random, sequence: int, moment: datetime, users: int) -> dict[str, Any]:
    user = rng.randrange(users)
    amount = round(min(rng.lognormvariate(3.4, 1.1), 25_000.0), 2)
    if rng.random() < 0.01:
        amount = -amount  # refunds: the demo filter drops them
    return {
        "payment_id": f"p{sequence:09d}",
        "user_id": user_id(user),
        "merchant": MERCHANTS[(user * 7 + rng.randrange(6)) % len(MERCHANTS)],
        "amount": amount,
        "currency": rng.choices(CURRENCIES, _CURRENCY_WEIGHTS)[0],
        "country": COUNTRIES[user % len(COUNTRIES)],
        "card": {"number": f"{4000_0000_0000_0000 + user * 7919:016d}", "scheme": "visa"},
        "ts": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }


def _malformed(rng: random.Random, record: dict[str, Any]) -> bytes:
    kind = rng.randrange(5)
    if kind == 0:
        return orjson.dumps(record)[:-7]  # truncated: invalid JSON
    if kind == 1:
        del record["user_id"]  # schema: required field missing
    elif kind == 2:
        record["amount"] = "twelve"  # schema: not a number
    elif kind == 3:
        record["currency"] = "XXX"  # schema: not a known currency
    else:
        record["card"]["number"] = int(record["card"]["number"])  # expression runtime error
    return orjson.dumps(record)


def payments(
    count: int,
    *,
    seed: int = 7,
    users: int = 500,
    malformed_ratio: float = 0.02,
    start: datetime = DEMO_START,
    events_per_second: float = 50.0,
) -> Iterator[bytes]:
    """`count` payment lines (bytes, no newline); event times advance at
    `events_per_second` with jitter, a few arrive out of order."""
    rng = random.Random(seed)
    step = 1.0 / events_per_second
    clock = 0.0
    for sequence in range(count):
        clock += rng.expovariate(1.0) * step
        jitter = -rng.uniform(0, 5) if rng.random() < 0.03 else 0.0  # a little disorder
        moment = start + timedelta(seconds=max(0.0, clock + jitter))
        record = payment(rng, sequence, moment, users)
        if rng.random() < malformed_ratio:
            yield _malformed(rng, record)
        else:
            yield orjson.dumps(record)


SETTLEMENT_STATUSES = ("settled", "declined")


def settlements(
    count: int,
    *,
    seed: int = 7,
    users: int = 500,
    start: datetime = DEMO_START,
    events_per_second: float = 50.0,
) -> Iterator[bytes]:
    """The demo's second stream: the bank's answer to each of `payments(count, …)` (same
    arguments, same payment ids), 0.5 to 30 s after the payment, in event-time order: 94%
    settled, 3% declined, 3% never answered (a left join shows them unsettled)."""
    rng = random.Random(seed + 2)
    pending: list[tuple[datetime, int, bytes]] = []
    for sequence, line in enumerate(
        payments(count, seed=seed, users=users, start=start, events_per_second=events_per_second)
    ):
        try:
            record = orjson.loads(line)
            moment = datetime.fromisoformat(record["ts"])
            payment_id = record["payment_id"]
        except (ValueError, KeyError, TypeError):
            continue  # a malformed demo payment: no answer
        while pending and pending[0][0] <= moment:
            yield heapq.heappop(pending)[2]
        draw = rng.random()
        if draw < 0.03:
            continue
        answered = moment + timedelta(seconds=rng.uniform(0.5, 30))
        answer = {
            "payment_id": payment_id,
            "status": SETTLEMENT_STATUSES[draw < 0.06],
            "ts": answered.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        heapq.heappush(pending, (answered, sequence, orjson.dumps(answer)))
    while pending:
        yield heapq.heappop(pending)[2]


def users_table(users: int = 500, *, seed: int = 7) -> Iterator[bytes]:
    """The `users` lookup table rows matching `payments(users=...)`."""
    rng = random.Random(seed + 1)
    for number in range(users):
        yield orjson.dumps(
            {
                "user_id": user_id(number),
                "tier": rng.choices(TIERS, (80, 15, 5))[0],
                "country": COUNTRIES[number % len(COUNTRIES)],
            }
        )


def write_lines(path: Path, lines: Iterator[bytes]) -> int:
    """Write lines to a JSON Lines file; returns how many."""
    written = 0
    with path.open("wb") as out:
        for line in lines:
            out.write(line + b"\n")
            written += 1
    return written


def main() -> None:
    """`python -m streams.offline.demo_data [N]`: N sample payment lines on stdout;
    `python -m streams.offline.demo_data users`: the users lookup table."""
    import sys

    argument = sys.argv[1] if len(sys.argv) > 1 else "10000"
    lines = users_table() if argument == "users" else payments(int(argument))
    out = sys.stdout.buffer
    for line in lines:
        out.write(line + b"\n")


if __name__ == "__main__":  # pragma: no cover
    main()
