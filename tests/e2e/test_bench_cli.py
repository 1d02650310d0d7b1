"""`sluice bench peers|latency|soak|kafka` as commands: options reach the harness, figures
are printed, bad options are refused. The harnesses are stubbed here (they run for minutes;
tests/integration/test_soak.py and test_steady_state.py run the real ones)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bench import kafka as bench_kafka
from bench import latency as bench_latency
from bench import peers as bench_peers
from bench import soak as bench_soak
from streams.cli import main

pytestmark = pytest.mark.e2e


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(main, ["bench", *args])


def test_peers_passes_its_options_and_prints_the_ratios(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: dict[str, Any] = {}

    def fake(
        events: int, runs: int, broker: str, jobs: Any, regimes: Any, results: Any, formats: Any
    ) -> Any:
        seen.update(
            events=events, runs=runs, broker=broker, jobs=jobs, regimes=regimes, formats=formats
        )
        summary = {"median_events_per_second": 1000, "runs": []}
        found = {"jobs": {"filter": {"quix": summary, "sluice": {"runs": [{"failed": "x"}]}}}}
        return {"brokers": {"tansu": {"catch-up": {**found, "ratios": {"filter: a/b": 1.5}}}}}

    monkeypatch.setattr(bench_peers, "bench_peers", fake)
    result = _invoke(
        "--results",
        str(tmp_path),
        "peers",
        "--jobs",
        "filter",
        "--regimes",
        "live",
        "--formats",
        "avro",
    )
    assert result.exit_code == 0, result.output
    assert seen == {
        "events": 200_000,
        "runs": 1,
        "broker": "tansu",
        "jobs": ["filter"],
        "regimes": ["live"],
        "formats": ["avro"],
    }
    assert "quix 1,000 | sluice FAILED" in result.output and "filter: a/b = 1.50" in result.output
    refused = _invoke("peers", "--jobs", "filter,joins")
    assert refused.exit_code == 2 and "'joins': one of filter, count, window" in refused.output


def test_latency_and_soak_pass_their_options(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[tuple[Any, ...]] = []

    def fake(kind: str) -> Any:
        def bench(*args: Any) -> dict[str, Any]:
            calls.append((kind, *args))
            return {"brokers": {"tansu": {"failed": "no"}}}

        return bench

    monkeypatch.setattr(bench_latency, "bench_latency", fake("latency"))
    monkeypatch.setattr(bench_soak, "bench_soak", fake("soak"))
    result = _invoke("--results", str(tmp_path), "latency", "--rates", "500,half", "--seconds", "3")
    assert result.exit_code == 0 and "tansu: FAILED: no" in result.output
    assert calls[-1] == ("latency", "tansu", ["500", "half"], 3.0, None, tmp_path)
    assert _invoke("latency", "--rates", "fast").exit_code == 2
    result = _invoke("soak", "--minutes", "2", "--phases", "50", "--max-rate", "900")
    assert result.exit_code == 0, result.output
    assert calls[-1:] == [("soak", "apache-kafka", 2.0, [50], 900.0, 10.0, Path("bench/results"))]
    assert _invoke("soak", "--phases", "half").exit_code == 2


def test_kafka_prints_a_failed_contender_instead_of_dying(monkeypatch: pytest.MonkeyPatch) -> None:
    figures = {
        "reference_events_per_second": 30_000,
        "sluice_events_per_second": None,
        "ratio_sluice_to_reference": None,
        "sluice_telemetry_off_events_per_second": {"failed": "worker exited 70"},
        "telemetry_cost": None,
        "windowed_events_per_second": 20_000,
        "ratio_windowed_to_reference": 0.667,
        "latency_at_half_rate": {"failed": "no throughput measured to take half of"},
    }
    monkeypatch.setattr(bench_kafka, "bench_kafka", lambda *args: figures)
    result = _invoke("--events", "1000", "kafka")
    assert result.exit_code == 0, result.output
    assert "FAILED: worker exited 70" in result.output
    assert "(0.667x of raw)" in result.output
    assert "latency at half rate: FAILED" in result.output
