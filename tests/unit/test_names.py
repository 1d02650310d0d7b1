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

from models.pipeline import PipelineName, PipelineSpec, StepName
from models.settings import AppId, Settings
from streams.config import load_settings
from streams.errors import ConfigErrors
from streams.runtime.changelog import WorkerState, changelog_topic
from streams.runtime.pipelines import FORWARDED_STORE, repartition_topic
from streams.state import runtime_store_name, step_store_name, store_owner

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


@settings(max_examples=600, deadline=None)
@given(one=owners, two=owners)
def test_distinct_owners_never_share_a_store_or_a_topic(
    one: tuple[str, str, tuple[str, str]], two: tuple[str, str, tuple[str, str]]
) -> None:
    app1, pipeline1, kind1 = one
    app2, pipeline2, kind2 = two
    if (pipeline1, kind1) != (pipeline2, kind2):
        assert _store(pipeline1, kind1) != _store(pipeline2, kind2)
    if pipeline1 != pipeline2:  # two pipelines' changelog and repartition topics
        assert _topics(app1, pipeline1, kind1).isdisjoint(_topics(app1, pipeline2, kind2))
    if app1 != app2:  # two apps on one cluster
        assert _topics(app1, pipeline1, kind1).isdisjoint(_topics(app2, pipeline2, kind2))
    elif one != two:
        assert changelog_topic(app1, _store(pipeline1, kind1)) != changelog_topic(
            app2, _store(pipeline2, kind2)
        )
    # a changelog topic is never a repartition topic
    assert changelog_topic(app1, _store(pipeline1, kind1)) != repartition_topic(app2, pipeline2)


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
