"""Seconds per test file, for the order `make test` runs files in (tests/conftest.py).

    .venv/bin/python -m pytest ... --durations=0 > run.log      # any full run
    .venv/bin/python -m tests.durations run.log                 # rewrites tests/durations.json

Files of 5 s or more are kept; a file not listed (new, or short) runs after the listed ones.
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path

import orjson

FILE = Path(__file__).with_name("durations.json")
_ROW = re.compile(r"^([0-9.]+)s (?:call|setup|teardown)\s+(\S+)", re.MULTILINE)
KEEP_S = 5.0


def per_file(log: str) -> dict[str, int]:
    """The seconds of each test file in a pytest log with `--durations=0`, longest first."""
    seconds: dict[str, float] = defaultdict(float)
    for took, test in _ROW.findall(log):
        seconds[test.split("::", 1)[0]] += float(took)
    kept = {name: round(s) for name, s in seconds.items() if s >= KEEP_S}
    return dict(sorted(kept.items(), key=lambda item: -item[1]))


def load() -> dict[str, int]:
    return orjson.loads(FILE.read_bytes()) if FILE.exists() else {}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    found = per_file(Path(argv[0]).read_text(errors="replace"))
    if not found:
        print(f"{argv[0]}: no durations (run pytest with --durations=0)", file=sys.stderr)
        return 1
    FILE.write_bytes(orjson.dumps(found, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"{FILE}: {len(found)} files, {sum(found.values())} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
