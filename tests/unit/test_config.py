"""Config errors name file, line, field and reason; all errors in one run."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.config.check import check
from streams.config.loader import load_config, load_pipeline, load_settings
from streams.core.errors import ConfigErrors

GOOD = """\
pipeline: demo
source: {topic: payments, key: user_id, timestamp: ts}
steps:
  - validate: {schema: {amount: float, user_id: str, note: "str?"}}
  - filter: "amount > 0"
  - map: {user_id: user_id, amount: amount}
sink: {topic: out}
"""


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def errors_of(path: Path) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        load_pipeline(path)
    return [e.describe() for e in info.value.errors]


def test_good_pipeline_loads(tmp_path: Path) -> None:
    spec = load_pipeline(write(tmp_path, GOOD))
    assert spec.pipeline == "demo"
    assert [name for name, _ in spec.named_steps()] == ["validate", "filter", "map"]
    assert spec.dead_letter_topic == "demo-dlq"
    assert spec.output_topics() == ["out", "demo-dlq"]


def test_unknown_function_names_file_line_field_and_suggestion(tmp_path: Path) -> None:
    text = GOOD.replace('"amount > 0"', '"lenght(user_id) > 0"')
    path = write(tmp_path, text)
    assert errors_of(path) == [
        f"{path}:5: steps[1].filter: unknown function 'lenght' (did you mean 'length'?) "
        "at column 1 in 'lenght(user_id) > 0'"
    ]


def test_every_error_in_one_run(tmp_path: Path) -> None:
    text = """\
pipeline: demo
source: {topic: payments}
steps:
  - validate: {model: "models.events:Paymnt"}
  - filtr: "amount > 0"
  - map: {eur: "amount * * 2"}
  - dedupe: {key: payment_id, within: 10 minutes}
  - window: {type: tumbling, aggregates: {n: count()}}
  - validate: {model: "no_such_module:Model"}
sink: {topic: "bad topic!"}
"""
    path = write(tmp_path, text)
    errors = errors_of(path)
    assert len(errors) == 7, errors
    joined = "\n".join(errors)
    assert (
        f"{path}:4: steps[0].validate.model: module 'models.events' has no 'Paymnt' "
        "(did you mean 'Payment'?)" in joined
    )
    assert f"{path}:5: steps[1]: unknown step kind 'filtr' (did you mean 'filter'?)" in joined
    assert f"{path}:6: steps[2].map.eur: syntax error" in joined
    assert f"{path}:7: steps[3].dedupe.within: invalid duration '10 minutes'" in joined
    assert f"{path}:8: steps[4].window: a tumbling window needs 'size'" in joined
    assert f"{path}:9: steps[5].validate.model: cannot import module 'no_such_module'" in joined
    assert f"{path}:10: sink.topic: String should match pattern" in joined


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    path = write(tmp_path, "pipeline: demo\nsource: {topic: payments\nsteps: []\n")
    [error] = errors_of(path)
    assert error.startswith(f"{path}:")
    assert "YAML" in error or "yaml" in error.lower()
    line = int(error.split(":")[1])
    assert line in (2, 3, 4)


def test_duplicate_keys_are_errors(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + "sink: {topic: other}\n")
    [error] = errors_of(path)
    assert error.startswith(f"{path}:8:")
    assert "sink" in error


def test_missing_and_unknown_fields(tmp_path: Path) -> None:
    path = write(tmp_path, "pipeline: demo\nsourse: {topic: x}\nsink: {topic: out}\n")
    errors = errors_of(path)
    assert f"{path}:1: source: required field is missing" in errors
    assert f"{path}:2: sourse: unknown field 'sourse'" in errors


@pytest.mark.parametrize(
    ("step", "fragment"),
    [
        ("- enrich: {table: users, on: user_id}", "table 'users' is not declared"),
        (
            "- window: {type: session, size: 1m, aggregates: {n: count()}}",
            "session window needs 'gap'",
        ),
        (
            "- window: {type: hopping, size: 1m, hop: 2m, aggregates: {n: count()}}",
            "'hop' must not be larger",
        ),
        ("- window: {type: tumbling, size: 1m, aggregates: {n: median(x)}}", "median"),
        ("- window: {type: tumbling, size: 1m, aggregates: {}}", "at least one aggregate"),
        ("- ratelimit: {key: user_id, rate: 0}", "greater than 0"),
        ("- ratelimit: {key: user_id, rate: 5, per: fast}", "invalid duration"),
        ('- alert: {name: big, when: "total +"}', "syntax error"),
        (
            '- component: {class: "tests.fixtures.components:NotAComponent"}',
            "process(self, record, ctx)",
        ),
        ('- component: {class: "tests.fixtures.components:Missing"}', "has no 'Missing'"),
        ("- validate: {schema: {amount: flaot}}", "did you mean 'float'"),
        ("- validate: {}", "either 'model"),
        ("- map: {}", "at least one output field"),
        ('- filter: "amount + 1"', "condition"),
        ("- [filter, x]", "a step is a mapping"),
    ],
)
def test_step_errors(tmp_path: Path, step: str, fragment: str) -> None:
    text = GOOD.replace('  - filter: "amount > 0"', "  " + step)
    path = write(tmp_path, text)
    errors = errors_of(path)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{path}:5: steps[1]")
    assert fragment in errors[0]


def test_route_sink_rules(tmp_path: Path) -> None:
    bad = GOOD.replace(
        "sink: {topic: out}", 'sink:\n  route:\n    - {else: rest}\n    - {when: "a > 1", to: x}'
    )
    path = write(tmp_path, bad)
    [error] = errors_of(path)
    assert "'else' must be the last route" in error
    both = GOOD.replace("sink: {topic: out}", "sink: {topic: out, route: [{else: x}]}")
    assert "not both" in errors_of(write(tmp_path, both, "q.yaml"))[0]


def test_settings_env_overrides_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sluice.yaml").write_text("web: {port: 7000}\nbrokers: [kafka://a:9092]\n")
    monkeypatch.setenv("SLUICE_WEB__PORT", "7100")
    monkeypatch.setenv("SLUICE_KAFKA__PASSWORD", "hunter2")
    settings = load_settings(tmp_path)
    assert settings.web.port == 7100
    assert settings.brokers == ["kafka://a:9092"]
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.model_dump())
    assert settings.kafka.password is not None
    assert settings.kafka.password.get_secret_value() == "hunter2"


def test_settings_errors_name_file_line_or_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "sluice.yaml").write_text("app_id: x\nweb: {port: 99999}\nstore: redis://\n")
    with pytest.raises(ConfigErrors) as info:
        load_settings(tmp_path)
    text = str(info.value)
    assert f"{tmp_path / 'sluice.yaml'}:2: web.port:" in text
    assert f"{tmp_path / 'sluice.yaml'}:3: store:" in text
    (tmp_path / "sluice.yaml").write_text("app_id: x\n")
    monkeypatch.setenv("SLUICE_PROCESSING__BATCH_MAX", "lots")
    with pytest.raises(ConfigErrors) as info:
        load_settings(tmp_path)
    assert "environment SLUICE_PROCESSING__BATCH_MAX" in str(info.value)


def test_load_config_collects_errors_across_files(tmp_path: Path) -> None:
    (tmp_path / "sluice.yaml").write_text("app_id: test\n")
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "a.yaml").write_text(GOOD)
    (pipelines / "b.yaml").write_text(GOOD)  # same pipeline name
    (pipelines / "c.yaml").write_text(GOOD.replace("amount > 0", "amount >"))
    loaded = load_config(tmp_path)
    assert list(loaded.pipelines) == ["demo"]
    messages = [e.describe() for e in loaded.errors]
    assert len(messages) == 2
    assert any("also defined in" in m and "b.yaml:1: pipeline" in m for m in messages)
    assert any("c.yaml:5: steps[1].filter: syntax error" in m for m in messages)
    with pytest.raises(ConfigErrors):
        loaded.require()


def test_check_paths(tmp_path: Path) -> None:
    repo_config = Path(__file__).resolve().parents[2] / "config"
    assert check(repo_config).ok
    assert check(repo_config / "pipelines").ok
    assert check(repo_config / "sluice.yaml").ok
    report = check(write(tmp_path, GOOD))
    assert report.ok and report.pipelines == ["demo"]
    assert not check(tmp_path / "missing").ok
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no sluice.yaml" in check(empty).errors[0].describe()


def test_yaml_booleans_are_only_true_and_false() -> None:
    from streams.config.yaml_lines import parse_yaml

    document = parse_yaml("enrich: {on: user_id, flag: yes, real: true}\n", "x.yaml")
    assert document.data == {"enrich": {"on": "user_id", "flag": "yes", "real": True}}
    assert document.line_of(("enrich", "on")) == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("kafka://a:9092", ["kafka://a:9092"]),
        ("kafka://a:9092, kafka://b:9093", ["kafka://a:9092", "kafka://b:9093"]),
        ('["kafka://a:9092"]', ["kafka://a:9092"]),
    ],
)
def test_brokers_variable_forms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, expected: list[str]
) -> None:
    monkeypatch.setenv("SLUICE_BROKERS", value)
    assert load_settings(tmp_path).brokers == expected


def test_bad_json_variable_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLUICE_WEB", "{not json")
    with pytest.raises(ConfigErrors, match="SLUICE_"):
        load_settings(tmp_path)
    monkeypatch.delenv("SLUICE_WEB")
    monkeypatch.setenv("SLUICE_BROKERS", "[not json")
    with pytest.raises(ConfigErrors, match="invalid JSON"):
        load_settings(tmp_path)


def test_step_names_that_could_collide_are_check_errors(tmp_path: Path) -> None:
    """A step's name names its state (`<pipeline>.<name>`, a changelog topic): a '.'
    could make two pipelines' state one, and `__…` is the runtime's own."""
    for name, reason in (
        ("a.b", "use letters, digits"),
        ("__forwarded", "reserved"),
        ("has space", "use letters, digits"),
    ):
        file = tmp_path / f"p-{len(reason)}-{abs(hash(name))}.yaml"
        file.write_text(
            "pipeline: p\nsource: {topic: a}\nsteps:\n"
            f"  - dedupe: {{key: id, within: 1m, name: '{name}'}}\nsink: {{topic: b}}\n"
        )
        report = check(file)
        assert not report.ok
        [error] = report.errors
        assert error.line == 4 and "name" in (error.field or ""), error.describe()
        assert reason in error.reason, error.describe()
