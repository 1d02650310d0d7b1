"""Issue 9 from the command line: replay, check and produce given hostile input."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from models.envelopes import ReplayDeadLetter
from streams.cli import main
from streams.cli.serve import _print_banner
from tests.e2e.test_cli import ROOT, sluice

WINDOWED = """pipeline: w
source: {topic: in, key: user, timestamp: ts}
steps:
  - window: {type: tumbling, size: 1m, key: user, late: dlq, aggregates: {n: count()}}
  - alert: {name: busy, when: "n > 100", key: user}
sink: {topic: out}
dlq: {topic: dlq}
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def dead_letters(path: Path) -> list[ReplayDeadLetter]:
    return [ReplayDeadLetter.model_validate_json(line) for line in path.read_bytes().splitlines()]


# --- case 1 -------------------------------------------------------------------------------


def test_replay_dead_letters_out_of_range_event_times_and_takes_a_skew(tmp_path: Path) -> None:
    pipeline = write(tmp_path / "w.yaml", WINDOWED)
    now = int(time.time())
    ahead = now + 30 * 86_400
    source = tmp_path / "in.jsonl"
    source.write_bytes(
        b"\n".join(
            orjson.dumps(record)
            for record in (
                {"user": "u", "ts": "9999-12-31T23:59:59Z"},
                {"user": "u", "ts": 1e300},
                {"user": "u", "ts": -1e15},
                {"user": "u", "ts": "9999-12-31T23:58:00Z"},
                {"user": "u", "ts": now},
                {"user": "u", "ts": ahead},
            )
        )
    )
    result = sluice("replay", str(pipeline), "--input", str(source), "-o", str(tmp_path / "a"))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    letters = dead_letters(tmp_path / "a" / "dlq.jsonl")
    assert [(d.error.step, d.error.type) for d in letters] == [("source", "timestamp")] * 5
    assert (tmp_path / "a" / "out.jsonl").read_bytes().count(b'"n":1') == 1

    result = sluice(
        "replay", str(pipeline), "--input", str(source), "-o", str(tmp_path / "b"),
        "--max-event-time-skew", "100d",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(dead_letters(tmp_path / "b" / "dlq.jsonl")) == 4  # 30 days ahead is fine now

    config = tmp_path / "config"
    config.mkdir()
    write(config / "sluice.yaml", "processing: {max_event_time_skew: 100d}\n")
    result = sluice(
        "replay", str(pipeline), "--input", str(source), "-o", str(tmp_path / "c"),
        "--config", str(config),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(dead_letters(tmp_path / "c" / "dlq.jsonl")) == 4


# --- case 3 -------------------------------------------------------------------------------


def test_replay_stops_with_a_message_when_a_sync_component_is_stuck(tmp_path: Path) -> None:
    pipeline = write(
        tmp_path / "s.yaml",
        "pipeline: s\nsource: {topic: in}\nsteps:\n"
        '  - component: {class: "tests.fixtures.components:Sleepy", timeout: 500ms}\n'
        "sink: {topic: out}\n",
    )
    source = write(tmp_path / "in.jsonl", '{"sleep": 0}\n\n{"sleep": 3600}\n{"sleep": 0}\n')
    began = time.monotonic()
    result = sluice("replay", str(pipeline), "--input", str(source), "-o", str(tmp_path / "o"))
    assert time.monotonic() - began < 30
    assert result.returncode == 3
    assert "pipeline 's' step 'component' is stuck on the record on line 3" in result.stderr
    assert "A sync process() cannot be interrupted" in result.stderr
    assert "Traceback" not in result.stderr


# --- cases 5 and 6 -----------------------------------------------------------------------------


def test_replay_keeps_big_integers_and_non_utf8_bytes_exact(tmp_path: Path) -> None:
    pipeline = write(
        tmp_path / "p.yaml",
        'pipeline: p\nsource: {topic: in}\nsteps:\n  - filter: "x > 0"\n'
        "  - map: {id: id, x: x, next: id + 1}\nsink: {topic: out}\ndlq: {topic: dlq}\n",
    )
    lines = [
        b'{"id": 18446744073709551616, "x": 1}',
        b"",
        b"   ",
        b'{"id": 1, "x": "\xff"}',
        b"\xff\xfe\x00 not json",
        b'{"id": 1, "x": "caf\xc3\xa9 ", "y": 1e400}',
        b"\r",
    ]
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    result = sluice("replay", str(pipeline), "--input", str(source), "-o", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    assert "skipped 3 blank lines" in result.stderr
    out = (tmp_path / "o" / "out.jsonl").read_bytes()
    assert out == b'{"id":18446744073709551616,"x":1,"next":18446744073709551617}\n'
    letters = dead_letters(tmp_path / "o" / "dlq.jsonl")
    assert [d.payload_encoding for d in letters] == ["base64", "base64", None]
    assert base64.b64decode(letters[0].payload) == lines[3]
    assert base64.b64decode(letters[1].payload) == lines[4]
    assert letters[2].payload == lines[5].decode()
    assert b"payload_encoding" not in (tmp_path / "o" / "dlq.jsonl").read_bytes().splitlines()[2]


# --- case 9: a corpus of broken configs -----------------------------------------------------------

CORPUS: dict[str, str] = {
    "alias-bomb": "\n".join(
        ["a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9]"]
        + [
            f"{n}: &{n} [{', '.join(['*' + p] * 9)}]"
            for p, n in zip("abcdefg", "bcdefgh", strict=True)
        ]
    ),
    "parens": '{steps}filter: "' + "(" * 60 + "a > 1" + ")" * 60 + '"',
    "nots": '{steps}filter: "' + "NOT " * 10_000 + 'a"',
    "ors": '{steps}filter: "' + " OR ".join(f"a = {i}" for i in range(2000)) + '"',
    "minus": '{steps}map: {x: "' + "- " * 3000 + 'a"}',
    "hopping": "{steps}window: {type: hopping, size: 1d, hop: 1ms, aggregates: {n: count()}}",
    "deep-yaml": "a: " + "[" * 5000 + "]" * 5000,
    "deep-block": "".join("  " * i + f"k{i}:\n" for i in range(400)) + "  " * 400 + "v: 1",
    "huge-int": "pipeline: " + "9" * 5000,
    "bad-date": "pipeline: 2026-13-45",
    "empty": "",
    "list": "- 1\n- 2",
    "scalar": "just text",
    "binary": "\udcff\udcfe",  # written as invalid UTF-8 bytes
    "tabs": "pipeline:\tx\n\tsource: y",
    "duplicate": "pipeline: a\npipeline: b",
    "merge": "a: &a {x: 1}\nb: {<<: *a}",
    "python-tag": "pipeline: !!python/object/apply:os.system ['true']",
    "collection-tag": "pipeline: !!python/object:os.system {}",
    "steps-scalar": "pipeline: p\nsource: {topic: t}\nsteps: 5\nsink: {topic: o}",
    "steps-nested": "pipeline: p\nsource: {topic: t}\nsteps: [[1], [[2]]]\nsink: {topic: o}",
    "source-list": "pipeline: p\nsource: []\nsink: {topic: o}",
    "name-list": "pipeline: [1]\nsource: {topic: t}\nsink: {topic: o}",
    "inf-size": "{steps}window: {type: tumbling, size: .inf, aggregates: {n: count()}}",
    "nan-size": "{steps}window: {type: tumbling, size: .nan, aggregates: {n: count()}}",
    "long-size": "{steps}window: {type: tumbling, size: 99999999999d, aggregates: {n: count()}}",
    "neg-grace": "{steps}window: {type: tumbling, size: 1m, grace: -1s, aggregates: {n: count()}}",
    "filter-int": "{steps}filter: 5",
    "filter-dict": "{steps}filter: {a: 1}",
    "map-list": "{steps}map: [1, 2]",
    "map-nested": "{steps}map: {x: [1, {y: 2}]}",
    "schema-int": "{steps}validate: {schema: {x: 5}}",
    "schema-list": "{steps}validate: {schema: [1]}",
    "class-int": "{steps}component: {class: 5}",
    "class-missing": '{steps}component: {class: "nowhere.at_all:X"}',
    "class-function": '{steps}component: {class: "os:system"}',
    "class-init-fails": '{steps}component: {class: "tests.fixtures.components:NeedsArguments"}',
    "timeout-zero": '{steps}component: {class: "tests.fixtures.components:Sleepy", timeout: 0s}',
    "regex-field": '{steps}filter: "regexp_like(s, p)"',
    "regex-backref": "{steps}filter: \"regexp_like(s, '(a)\\\\1')\"",
    "regex-redos": "{steps}filter: \"regexp_like(s, '^(a+)+$')\"",
    "unterminated": '{steps}filter: "\'abc"',
    "subquery": '{steps}filter: "a IN (SELECT 1)"',
    "statements": '{steps}filter: "a = 1; DROP TABLE x"',
    "aggregate-nested": '{steps}window: {type: tumbling, size: 1m, aggregates: {n: "sum(sum(a))"}}',
    "percentile-2": "{steps}window: {type: tumbling, size: 1m, aggregates: "
    '{n: "percentile(a, 2)"}}',
    "rate-inf": "{steps}ratelimit: {key: u, rate: .inf, burst: .inf}",
    "rate-nan": "{steps}ratelimit: {key: u, rate: .nan}",
    "key-empty": "{steps}dedupe: {key: [], within: 1m}",
    "key-int": "{steps}dedupe: {key: [1], within: 1m}",
    "unknown-step": "{steps}frobnicate: {x: 1}",
    "two-kinds": '{steps}filter: "a > 1"\n    map: {x: a}',
    "route-empty": "pipeline: p\nsource: {topic: t}\nsink: {route: []}",
    "long-field": '{steps}map: {x: "' + "a" * 20_000 + '"}',
    "config-deep": '{steps}component: {class: "tests.fixtures.components:CountPerKey", '
    "config: " + "{a: " * 300 + "1" + "}" * 300 + "}",
}
STEPS = "pipeline: p\nsource: {topic: t, timestamp: ts}\nsink: {topic: o}\nsteps:\n  - "


def _corpus(folder: Path) -> list[Path]:
    folder.mkdir()
    files = []
    for name, text in CORPUS.items():
        body = text.replace("{steps}", STEPS, 1) if text.startswith("{steps}") else text
        file = folder / f"{name}.yaml"
        file.write_bytes(body.encode("utf-8", errors="surrogateescape"))
        files.append(file)
    return files


def test_no_config_ever_makes_check_or_replay_print_a_traceback(tmp_path: Path) -> None:
    files = _corpus(tmp_path / "corpus")
    result = sluice("check", str(tmp_path / "corpus"))
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    reported = result.stdout
    passing = {"regex-redos", "rate-inf", "class-init-fails", "config-deep", "long-field"}
    for file in files:
        if file.stem not in passing:
            assert f"{file}:" in reported or f"{file}: " in reported, file.stem
    source = write(tmp_path / "in.jsonl", '{"a": 1, "ts": 1}\n')
    runner = CliRunner()
    for file in files:
        began = time.monotonic()
        checked = runner.invoke(main, ["check", str(file)])
        assert checked.exception is None or isinstance(checked.exception, SystemExit), file
        assert "Traceback" not in checked.output
        assert checked.exit_code == (0 if file.stem in passing else 1), (file.stem, checked.output)
        replayed = runner.invoke(
            main, ["replay", str(file), "--input", str(source), "-o", str(tmp_path / "o")]
        )
        assert replayed.exception is None or isinstance(replayed.exception, SystemExit), (
            file.stem,
            replayed.exception,
        )
        assert "Traceback" not in replayed.output
        assert time.monotonic() - began < 10, file.stem


# --- case 12: produce -----------------------------------------------------------------------------


class FakeProducer:
    sent: list[bytes] = []

    def __init__(self, **options: Any) -> None:
        self.options = options

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> Any:
        import asyncio

        FakeProducer.sent.append(value)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def test_produce_reports_oversize_lines_and_sends_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streams.runtime import topic_io as clients

    monkeypatch.setattr(clients, "AIOKafkaProducer", FakeProducer)
    monkeypatch.setenv("SLUICE_BROKERS", "kafka://127.0.0.1:9")
    FakeProducer.sent = []
    big = b'{"pad": "' + b"x" * 2_097_290 + b'"}'
    lines = [b'{"n": %d}' % i for i in range(6)] + [big] + [b'{"n": %d}' % i for i in range(6, 9)]
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    result = CliRunner().invoke(main, ["produce", "t", "--input", str(source)])
    assert result.exit_code == 1, result.output
    assert f"line 7: {len(big):,} bytes, more than processing.max_message_bytes" in result.output
    assert "sent 9 messages, skipped 1" in result.output
    assert FakeProducer.sent == [line for line in lines if line is not big]
    assert "Traceback" not in result.output


def test_produce_exits_0_when_nothing_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streams.runtime import topic_io as clients

    monkeypatch.setattr(clients, "AIOKafkaProducer", FakeProducer)
    monkeypatch.setenv("SLUICE_BROKERS", "kafka://127.0.0.1:9")
    source = write(tmp_path / "in.jsonl", '{"n": 1}\n\n{"n": 2}\n')
    result = CliRunner().invoke(main, ["produce", "t", "--input", str(source)])
    assert result.exit_code == 0, result.output
    assert "sent 2 messages, skipped 0" in result.output


# --- case 16 ----------------------------------------------------------------------------------


def test_replay_shows_component_log_lines(tmp_path: Path) -> None:
    pipeline = write(
        tmp_path / "l.yaml",
        "pipeline: l\nsource: {topic: in}\nsteps:\n"
        '  - component: {class: "tests.fixtures.components:LogEach"}\nsink: {topic: out}\n',
    )
    source = write(tmp_path / "in.jsonl", '{"user": "u1"}\n')
    result = sluice(
        "replay", str(pipeline), "--input", str(source), "-o", str(tmp_path / "o"),
        "--log-format", "console",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "component saw u1" in result.stderr
    quiet = sluice(
        "replay", str(pipeline), "--input", str(source), "-o", str(tmp_path / "o"),
        "--log-level", "WARNING",
    )  # fmt: skip
    assert "component saw" not in quiet.stderr


def test_unknown_variables_fail_commands_that_read_settings(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["check", str(ROOT / "config")], env={"SLUICE_WEB__PROT": "7000"}
    )
    assert result.exit_code == 1
    assert "environment SLUICE_WEB__PROT: unknown variable (did you mean SLUICE_WEB__PORT?)" in (
        result.output
    )


def test_run_takes_a_broker_port_and_the_banner_names_the_config(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from models.settings import Settings
    from streams.config.loader import load_config

    assert "--broker-port N" in CliRunner().invoke(main, ["run", "--help"]).output
    loaded = load_config(ROOT / "config")
    # console format: the banner as text (in json format it is log lines)
    settings = Settings(brokers=["kafka://127.0.0.1:9999"], log={"format": "console"})
    _print_banner(settings, loaded.pipelines, embedded=True, demo=False, config_dir=Path("cfg"))
    banner = capsys.readouterr().err
    assert "sluice consume payments-clean --config cfg" in banner
    assert "--envelope --config cfg" in banner
    _print_banner(settings, loaded.pipelines, embedded=True, demo=False)
    assert "--config" not in capsys.readouterr().err
