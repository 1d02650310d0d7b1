"""What `attach` refuses: a pipeline it cannot host as written (a join reads a second
stream, which one agent on the source topic would never see: wrong results, silently)."""

from __future__ import annotations

from pathlib import Path

import faust
import pytest

from streams.faust import attach
from streams.faust.attach import FaustHostError

ROOT = Path(__file__).resolve().parents[2]


def test_a_join_is_refused_with_one_clear_error() -> None:
    app = faust.App("sluice-attach-test", broker="kafka://127.0.0.1:9")
    with pytest.raises(FaustHostError) as refused:
        attach(app, ROOT / "config" / "pipelines" / "payments-settled.yaml")
    said = str(refused.value)
    assert "'payments-settled' joins the stream 'settlements'" in said
    assert "sluice worker" in said
