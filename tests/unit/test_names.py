"""Every derived name — a store, a changelog topic, a repartition topic — belongs to exactly
one (app, pipeline, step): distinct owners never share one (issue 22 case 3: pipeline `a`
took the stores of `a.b`, and app `x` + pipeline `y-z` shared topics with app `x-y` +
pipeline `z`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from models.pipeline_spec import PipelineName, PipelineSpec, StepName
from models.settings import AppId, Settings
from streams.config.loader import load_settings
from streams.core.errors import ConfigErrors
from streams.core.state import runtime_store_name, step_store_name, store_owner
from streams.runtime.changelog import WorkerState, changelog_topic
from streams.runtime.pipeline_runner import FORWARDED_STORE, repartition_topic

_APP = TypeAdapter(AppId)
_PIPELINE = TypeAdapter(PipelineName)
_STEP = TypeAdapter(StepName)
RUNTIME_STORES = (FORWARDED_STORE,)


def _valid(adapter: TypeAdapter[str], name: str) -> bool:
    try:
        adapter.validate_python(name)
    except ValidationError:
        return False
    return True


# A small alphabet of the separators ('.', '-', '_') and two letters: if two owners could
# share a name, short names like these find them (before the fix: `a` + `b-a` and `a-b` +
# `a` in a few examples).
_TEXT = st.text(alphabet="ab.-_", min_size=1, max_size=6)
apps = _TEXT.filter(lambda n: _valid(_APP, n))
pipelines = _TEXT.filter(lambda n: _valid(_PIPELINE, n))
steps = _TEXT.filter(lambda n: _valid(_STEP, n))
# what a worker keeps for a pipeline: a step's store, or a store of the runtime's own
kinds = st.one_of(
    steps.map(lambda s: ("step", s)), st.sampled_from(RUNTIME_STORES).map(lambda w: ("runtime", w))
)
owners = st.tuples(apps, pipelines, kinds)


def _store(pipeline: str, kind: tuple[str, str]) -> str:
    what, name = kind
    return step_store_name(pipeline, name) if what == "step" else runtime_store_name(pipeline, name)


def _topics(app: str, pipeline: str, kind: tuple[str, str]) -> set[str]:
    """Every topic a worker of `app` makes for this pipeline and store."""
    return {changelog_topic(app, _store(pipeline, kind)), repartition_topic(app, pipeline)}


def _cuts(text: str, separator: str) -> list[tuple[str, str]]:
    return [(text[:i], text[i + 1 :]) for i, c in enumerate(text) if c == separator]


def _owners_of_store(store: str) -> set[tuple[str, tuple[str, str]]]:
    """Every (pipeline, kind) that validation admits and whose store is named `store`."""
    found = set()
    for pipeline, last in _cuts(store, "."):
        if not _valid(_PIPELINE, pipeline):
            continue
        if _valid(_STEP, last):
            found.add((pipeline, ("step", last)))
        if last.startswith("__") and last[2:] in RUNTIME_STORES:
            found.add((pipeline, ("runtime", last[2:])))
    return {o for o in found if _store(*o) == store}


def _owners_of_topic(topic: str) -> set[tuple[str, ...]]:
    """Every owner that validation admits and for which a worker makes `topic`: every way
    to cut the name into an app id, a pipeline and a step."""
    found: set[tuple[str, ...]] = set()
    if topic.endswith("-changelog"):
        for app, store in _cuts(topic.removesuffix("-changelog"), "-"):
            if _valid(_APP, app):
                found |= {(app, p, *kind) for p, kind in _owners_of_store(store)}
    if topic.endswith("-repartition"):
        for app, pipeline in _cuts(topic.removesuffix("-repartition"), "-"):
            if _valid(_APP, app) and _valid(_PIPELINE, pipeline):
                found.add((app, pipeline, "repartition"))
    return found


@settings(max_examples=500, deadline=None)
@given(owner=owners)
def test_no_other_owner_makes_the_same_name(owner: tuple[str, str, tuple[str, str]]) -> None:
    """Not a search for a colliding pair by chance: every other way to read each name back
    into names that pass validation is tried (before the fix: app `a` + pipeline `b-a` and
    app `a-b` + pipeline `a` both made `a-b-a-repartition`)."""
    app, pipeline, kind = owner
    store = _store(pipeline, kind)
    assert _owners_of_store(store) == {(pipeline, kind)}
    assert _owners_of_topic(changelog_topic(app, store)) == {(app, pipeline, *kind)}
    assert _owners_of_topic(repartition_topic(app, pipeline)) == {(app, pipeline, "repartition")}


@settings(max_examples=300, deadline=None)
@given(owner=owners)
def test_each_name_gives_back_its_owner(owner: tuple[str, str, tuple[str, str]]) -> None:
    """A left inverse: the app, the pipeline and the step read back from the names alone."""
    app, pipeline, kind = owner
    store = _store(pipeline, kind)
    assert store_owner(store) == pipeline
    topic = changelog_topic(app, store)
    assert topic.endswith("-changelog")
    read_app, _, read_store = topic.removesuffix("-changelog").partition("-")
    assert (read_app, read_store) == (app, store)
    assert store.rpartition(".")[2] == (kind[1] if kind[0] == "step" else f"__{kind[1]}")
    read_app, _, read_pipeline = repartition_topic(app, pipeline).partition("-")
    assert (read_app, read_pipeline.removesuffix("-repartition")) == (app, pipeline)


def test_a_pipeline_owns_its_stores_only_not_those_of_a_pipeline_named_after_it() -> None:
    state = WorkerState("app")
    for name in ("a.window", "a.__forwarded", "a.b.window", "ab.window", "a.b.c.dedupe"):
        state.store(name)
    assert [s.name for s in state.stores_of("a")] == ["a.window", "a.__forwarded"]
    assert [s.name for s in state.stores_of("a.b")] == ["a.b.window"]
    assert [s.name for s in state.stores_of("a.b.c")] == ["a.b.c.dedupe"]


@pytest.mark.parametrize("app_id", ["x-y", "my-app", "-", "a b", ""])
def test_an_app_id_that_could_share_topics_is_a_config_error(tmp_path: Path, app_id: str) -> None:
    (tmp_path / "sluice.yaml").write_text(f"web: {{port: 7000}}\napp_id: '{app_id}'\n")
    with pytest.raises(ConfigErrors) as info:
        load_settings(tmp_path)
    text = str(info.value)
    assert f"{tmp_path / 'sluice.yaml'}:2: app_id:" in text, text
    assert "no '-'" in text and "share" in text, text


def test_app_ids_without_a_dash_keep_their_topic_names() -> None:
    for app_id in ("sluice", "shop.payments", "shop_payments", "t0a1b2"):
        settings = Settings(app_id=app_id)
        assert changelog_topic(settings.app_id, "p.window") == f"{app_id}-p.window-changelog"


def test_table_names_hold_no_dot() -> None:
    spec: dict[str, Any] = {
        "pipeline": "p",
        "source": {"topic": "in"},
        "tables": {"users.eu": {"topic": "users", "key": "id"}},
        "sink": {"topic": "out"},
    }
    with pytest.raises(ValidationError, match=r"table name 'users\.eu'"):
        PipelineSpec.model_validate(spec)
    spec["tables"] = {"users_eu": {"topic": "users", "key": "id"}}
    assert list(PipelineSpec.model_validate(spec).tables) == ["users_eu"]
