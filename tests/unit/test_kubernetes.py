"""deploy/kubernetes/: every rendered manifest is valid against its schema, offline, and the
manifests agree with the image, the settings, the pipelines and the Prometheus rules.

Kubernetes' kinds are checked against the strict schemas bundled in `kubernetes-validate`
(for the oldest and the newest Kubernetes version we claim), the custom resources against
the CRD schemas vendored in deploy/kubernetes/crd-schemas/ (see its README), made strict
the same way. The overlays are rendered by the real kustomize, pinned (tests.kustomize;
`make kustomize` installs it).
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from kubernetes_validate.utils import SchemaNotFoundError, latest_version  # type: ignore[import-untyped]

from models.settings import KafkaSettings, Settings
from streams.config.check import check
from streams.config.loader import load_config
from streams.runtime.changelog import LOCAL_STATE_DIR
from tests.kustomize import (
    KUBERNETES,
    KustomizeError,
    MissingKustomize,
    prometheus_rule_text,
    render,
)
from tests.unit.test_deploy import COMPOSE, METRICS, ROOT, sluice_command_is_valid

OVERLAYS = {
    "base": KUBERNETES / "base",
    "secured": KUBERNETES / "overlays" / "secured",
    "rocksdb": KUBERNETES / "overlays" / "rocksdb",
}
OLDEST_KUBERNETES = "1.28"
CRD_SCHEMAS = KUBERNETES / "crd-schemas"
DOCKERFILE = (ROOT / "Dockerfile").read_text()
DUMMY_SECRET = "not-a-real-secret"

Resource = dict[str, Any]


@cache
def rendered(overlay: str) -> tuple[Resource, ...]:
    try:
        return tuple(render(OVERLAYS[overlay]))
    except MissingKustomize as exc:
        pytest.fail(str(exc), pytrace=False)


def rendered_copy(overlay: str) -> list[Resource]:
    return copy.deepcopy(list(rendered(overlay)))


def one(resources: list[Resource], kind: str, name: str | None = None) -> Resource:
    found = [r for r in resources if r["kind"] == kind and name in (None, r["metadata"]["name"])]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]


def workload(resources: list[Resource]) -> Resource:
    [found] = [r for r in resources if r["kind"] in ("Deployment", "StatefulSet")]
    return found


def container(resources: list[Resource]) -> dict[str, Any]:
    [found] = workload(resources)["spec"]["template"]["spec"]["containers"]
    container: dict[str, Any] = found
    return container


def _strict(schema: Any) -> Any:
    """additionalProperties: false wherever the schema lists properties and allows no others
    explicitly: the API server would prune a misspelt field silently. Also Go's regular
    expressions take an inline flag anywhere (`^(?i)…`), Python's only at the start."""
    if isinstance(schema, dict):
        schema = {key: _strict(value) for key, value in schema.items()}
        pattern = schema.get("pattern")
        if isinstance(pattern, str) and pattern.startswith("^(?i)"):
            schema["pattern"] = "(?i)^" + pattern.removeprefix("^(?i)")
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


@cache
def crd_validators() -> dict[tuple[str, str], jsonschema.Draft202012Validator]:
    validators = {}
    for file in sorted(CRD_SCHEMAS.glob("*.json")):
        schema = json.loads(file.read_text())
        [gvk] = schema["x-kubernetes-group-version-kind"]
        api_version = f"{gvk['group']}/{gvk['version']}"
        validators[(api_version, gvk["kind"])] = jsonschema.Draft202012Validator(_strict(schema))
    return validators


def validate(resource: Resource, kubernetes_version: str) -> None:
    """Raises jsonschema.ValidationError (or SchemaNotFoundError: no schema at all)."""
    validator = crd_validators().get((resource["apiVersion"], resource["kind"]))
    if validator is not None:
        validator.validate(resource)
        return
    kubernetes_validate.validate(resource, kubernetes_version, strict=True)


def settings_and_pipelines(overlay: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The ConfigMaps laid out as the pod mounts them, the pod's SLUICE_* variables set (a
    dummy for each value from a Secret), and `sluice check`'s loader run on them."""
    resources = rendered_copy(overlay)
    pod = workload(resources)["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in container(resources)["volumeMounts"]}
    for volume in pod["volumes"]:
        if "configMap" not in volume:
            continue
        config_map = one(resources, "ConfigMap", volume["configMap"]["name"])
        folder = tmp_path / mounts[volume["name"]].lstrip("/")
        folder.mkdir(parents=True)
        for key, text in config_map["data"].items():
            (folder / key).write_text(text)
    for variable in container(resources)["env"]:
        value = variable.get("value")
        if value is None and "secretKeyRef" in variable.get("valueFrom", {}):
            value = DUMMY_SECRET
        monkeypatch.setenv(variable["name"], value)
    config_dir = tmp_path / config_dir_argument(resources).lstrip("/")
    return config_dir, load_config(config_dir)


def config_dir_argument(resources: list[Resource]) -> str:
    args = container(resources)["args"]
    return str(args[args.index("--config") + 1])


# --- the generated ConfigMaps ------------------------------------------------------------


def test_a_changed_config_file_renames_its_configmap_so_the_workers_roll(
    tmp_path: Path,
) -> None:
    """kustomize names a generated ConfigMap by a hash of its content and rewrites the pod
    template's references: an edited sluice.yaml is a new pod template, hence a rollout."""
    before = rendered_copy("base")
    copy_ = tmp_path / "base"
    shutil.copytree(KUBERNETES / "base", copy_)
    settings = copy_ / "config" / "sluice.yaml"
    settings.write_text(settings.read_text() + "\n# edited\n")
    after = render(copy_)

    def config_names(resources: list[Resource]) -> tuple[set[str], set[str]]:
        maps = {r["metadata"]["name"] for r in resources if r["kind"] == "ConfigMap"}
        pod = workload(resources)["spec"]["template"]["spec"]
        used = {v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v}
        return maps, used

    maps_before, used_before = config_names(before)
    maps_after, used_after = config_names(after)
    assert maps_before == used_before and maps_after == used_after
    changed = maps_after - maps_before
    assert len(changed) == 1 and next(iter(changed)).startswith("sluice-config-")
    assert {n for n in maps_before if n.startswith("sluice-pipelines-")} == {
        n for n in maps_after if n.startswith("sluice-pipelines-")
    }


def test_a_broken_kustomization_is_kustomizes_error(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: [missing.yaml]\n")
    with pytest.raises(KustomizeError, match=r"missing\.yaml"):
        render(tmp_path)


# --- schemas -----------------------------------------------------------------------------


def test_vendored_crd_schemas_are_json_schemas_for_their_kinds() -> None:
    assert set(crd_validators()) == {
        ("keda.sh/v1alpha1", "ScaledObject"),
        ("keda.sh/v1alpha1", "TriggerAuthentication"),
        ("monitoring.coreos.com/v1", "ServiceMonitor"),
        ("monitoring.coreos.com/v1", "PrometheusRule"),
    }
    for file in CRD_SCHEMAS.glob("*.json"):
        jsonschema.Draft202012Validator.check_schema(_strict(json.loads(file.read_text())))
        assert file.name in (CRD_SCHEMAS / "README.md").read_text()


@pytest.mark.parametrize("kubernetes_version", [OLDEST_KUBERNETES, latest_version()])
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_manifest_is_valid(overlay: str, kubernetes_version: str) -> None:
    resources = rendered(overlay)
    assert resources
    for resource in resources:
        try:
            validate(resource, kubernetes_version)
        except SchemaNotFoundError:
            pytest.fail(f"{overlay}: no schema for {resource['apiVersion']} {resource['kind']}")
        except jsonschema.ValidationError as error:
            where = "/".join(str(p) for p in error.absolute_path)
            pytest.fail(f"{overlay}: {resource['kind']} {where}: {error.message}")


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        ("Deployment", ["spec", "replica"], 2),  # misspelt
        ("Deployment", ["spec", "template", "spec", "terminationGracePeriodSeconds"], "45"),
        ("ScaledObject", ["spec", "maxReplicas"], 4),  # the HPA's name, not KEDA's
        ("ScaledObject", ["spec", "triggers", 0, "metadata", "lagThreshold"], 1000),
        ("ServiceMonitor", ["spec", "endpoints", 0, "scheme"], "tcp"),
        ("PrometheusRule", ["spec", "groups", 0, "rules", 0, "for"], "five minutes"),
    ],
)
def test_a_broken_manifest_fails_validation(kind: str, path: list[Any], value: Any) -> None:
    resource = copy.deepcopy(one(list(rendered("base")), kind))
    target: Any = resource
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        validate(resource, latest_version())


# --- the manifests agree with the image, the settings and the rules ----------------------


def test_prometheus_rule_groups_are_alerts_yml() -> None:
    alerts = yaml.safe_load((ROOT / "config" / "prometheus" / "alerts.yml").read_text())
    rule = one(list(rendered("base")), "PrometheusRule")
    assert rule["spec"]["groups"] == alerts["groups"], (
        "deploy/kubernetes/base/prometheusrule.yaml is stale: python -m tests.kustomize sync-rules"
    )
    text = (KUBERNETES / "base" / "prometheusrule.yaml").read_text()
    assert text == prometheus_rule_text()
    used = {m.removesuffix("_bucket") for m in re.findall(r"sluice_[a-z_]+", json.dumps(rule))}
    design = set(re.findall(r"sluice_[a-z_]+", (ROOT / "DESIGN.md").read_text()))
    assert used and used <= METRICS and used <= design, used - design


def test_cpu_rule_selects_the_job_prometheus_gives_the_service() -> None:
    """The Prometheus Operator names the scrape job after the Service."""
    resources = list(rendered("base"))
    rule = one(resources, "PrometheusRule")
    exprs = [r["expr"] for group in rule["spec"]["groups"] for r in group["rules"]]
    jobs = {job for expr in exprs for job in re.findall(r'job="([^"]+)"', expr)}
    assert jobs == {one(resources, "Service")["metadata"]["name"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ports_probes_and_scraping_line_up(
    overlay: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    resources = rendered_copy(overlay)
    _, loaded = settings_and_pipelines(overlay, tmp_path, monkeypatch)
    worker = container(resources)
    [port] = worker["ports"]
    assert port["containerPort"] == loaded.settings.web.port
    assert f"EXPOSE {port['containerPort']}" in DOCKERFILE
    assert loaded.settings.web.host == "0.0.0.0"
    for probe, path in (("startupProbe", "/health"), ("livenessProbe", "/health")):
        assert worker[probe]["httpGet"] == {"path": path, "port": port["name"]}
    assert worker["readinessProbe"]["httpGet"] == {"path": "/ready", "port": port["name"]}
    monitor = one(resources, "ServiceMonitor")
    selected = [
        service
        for service in resources
        if service["kind"] == "Service"
        and monitor["spec"]["selector"]["matchLabels"].items()
        <= service["metadata"]["labels"].items()
    ]
    assert len(selected) == 1, "each pod scraped once"
    [service_port] = selected[0]["spec"]["ports"]
    assert service_port["targetPort"] == port["name"]
    assert monitor["spec"]["endpoints"] == [
        {"port": service_port["name"], "path": "/metrics", "interval": "15s"}
    ]
    pod_labels = workload(resources)["spec"]["template"]["metadata"]["labels"]
    for selector in (
        selected[0]["spec"]["selector"],
        one(resources, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        workload(resources)["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= pod_labels.items()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_image_runs_a_valid_worker_command(overlay: str) -> None:
    resources = list(rendered(overlay))
    worker = container(resources)
    assert "command" not in worker, "the image's ENTRYPOINT (sluice) stays"
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (.+)$", DOCKERFILE, re.M)[1])  # type: ignore[index]
    assert entrypoint == ["sluice"]
    assert worker["args"][0] == "worker"
    sluice_command_is_valid(worker["args"])
    version = re.search(r'^version = "(.+)"$', (ROOT / "pyproject.toml").read_text(), re.M)
    assert version and worker["image"] == f"sluice:{version[1]}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_configmaps_pass_sluice_check(
    overlay: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_dir, loaded = settings_and_pipelines(overlay, tmp_path, monkeypatch)
    report = check(config_dir)
    assert report.ok, [error.describe() for error in report.errors]
    assert not loaded.errors
    assert sorted(loaded.pipelines) == sorted(load_config(ROOT / "config").pipelines)
    shipped = {p.name: p.read_text() for p in (ROOT / "config" / "pipelines").glob("*.*")}
    copies = KUBERNETES / "base" / "pipelines"
    assert {p.name: p.read_text() for p in copies.glob("*.*")} == shipped, (
        "deploy/kubernetes/base/pipelines/ holds copies of config/pipelines/ "
        "(kustomize reads no file outside its folder)"
    )


def _settings_field(name: str) -> bool:
    """Whether SLUICE_A__B names a real field: Settings.a.b (pydantic-settings ignores a
    variable that names none, so a typo would pass unnoticed)."""
    model: Any = Settings
    for part in name.removeprefix("SLUICE_").lower().split("__"):
        fields = getattr(model, "model_fields", {})
        if part not in fields:
            return False
        model = fields[part].annotation
        if getattr(model, "__args__", None):  # X | None
            model = next((a for a in model.__args__ if hasattr(a, "model_fields")), model)
    return True


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_environment_names_real_settings_and_secrets_come_from_secrets(overlay: str) -> None:
    env = container(list(rendered(overlay)))["env"]
    names = [variable["name"] for variable in env]
    assert len(names) == len(set(names))
    assert all(name.startswith("SLUICE_") and _settings_field(name) for name in names), names
    assert not _settings_field("SLUICE_KAFKA__PASWORD")
    secret_fields = {"SLUICE_WEB__TOKEN"} | {
        f"SLUICE_KAFKA__{name.upper()}"
        for name, field in KafkaSettings.model_fields.items()
        if "SecretStr" in str(field.annotation) or name == "username"
    }
    for variable in env:
        if variable["name"] in secret_fields:
            assert "secretKeyRef" in variable.get("valueFrom", {}), variable
    assert {"name": "SLUICE_WEB__HOST", "value": "0.0.0.0"} in env


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_runs_non_root_on_a_read_only_root_with_every_written_path_a_volume(
    overlay: str,
) -> None:
    resources = list(rendered(overlay))
    pod = workload(resources)["spec"]["template"]["spec"]
    worker = container(resources)
    uid = re.search(r"^USER (\d+):(\d+)$", DOCKERFILE, re.M)
    assert uid, "the image's USER must be numeric for runAsNonRoot to verify it"
    assert pod["securityContext"]["runAsUser"] == int(uid[1]) != 0
    assert pod["securityContext"]["runAsGroup"] == int(uid[2])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert worker["securityContext"] == {
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    # what the worker writes: local state (rocksdb://) under the working directory (the
    # image's WORKDIR), and Python's temporary files
    workdir = re.findall(r"^WORKDIR (.+)$", DOCKERFILE, re.M)[-1]
    assert str(LOCAL_STATE_DIR) == ".sluice-data"
    mounted = {mount["mountPath"] for mount in worker["volumeMounts"]}
    assert {"/tmp", f"{workdir}/.sluice-data"} <= mounted
    writable = {m["mountPath"] for m in worker["volumeMounts"] if not m.get("readOnly")}
    assert writable == {"/tmp", f"{workdir}/.sluice-data"}
    # the worker's graceful stop gives up 15 s after SIGTERM: the kubelet must wait longer
    assert pod["terminationGracePeriodSeconds"] >= 30
    assert pod["enableServiceLinks"] is False
    resources_ = worker["resources"]
    assert set(resources_["requests"]) == set(resources_["limits"]) == {"cpu", "memory"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_scales_on_the_lag_of_the_workers_group(
    overlay: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    resources = rendered_copy(overlay)
    _, loaded = settings_and_pipelines(overlay, tmp_path, monkeypatch)
    settings, pipelines = loaded.settings, loaded.pipelines
    scaled = one(resources, "ScaledObject")["spec"]
    target = workload(resources)
    assert scaled["scaleTargetRef"] == {
        "apiVersion": target["apiVersion"],
        "kind": target["kind"],
        "name": target["metadata"]["name"],
    }
    triggers = scaled["triggers"]
    assert {t["type"] for t in triggers} == {"kafka"}
    source_topics = sorted({spec.source.topic for spec in pipelines.values()})
    assert sorted(t["metadata"]["topic"] for t in triggers) == source_topics
    for trigger in triggers:
        metadata = trigger["metadata"]
        assert metadata["consumerGroup"] == settings.app_id
        assert metadata["bootstrapServers"] == ",".join(settings.broker_addresses())
        assert int(metadata["lagThreshold"]) > 0
        assert metadata["allowIdleConsumers"] == "false"
    # more workers than source partitions would idle: the cap is the partition count
    compose_partitions = int(COMPOSE["services"]["kafka"]["environment"]["KAFKA_NUM_PARTITIONS"])
    assert scaled["maxReplicaCount"] == settings.processing.partitions == compose_partitions
    assert 1 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"]
    assert target["spec"]["replicas"] == scaled["minReplicaCount"]


def test_secured_overlay_wires_sasl_ssl_for_workers_and_keda(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    resources = rendered_copy("secured")
    _, loaded = settings_and_pipelines("secured", tmp_path, monkeypatch)
    kafka = loaded.settings.kafka
    assert kafka.security_protocol == "SASL_SSL" and kafka.sasl_mechanism == "SCRAM-SHA-512"
    assert kafka.password is not None and kafka.password.get_secret_value() == DUMMY_SECRET
    pod = workload(resources)["spec"]["template"]["spec"]
    worker = container(resources)
    # ssl_cafile is a file of a mounted Secret
    assert kafka.ssl_cafile
    cafile = Path(kafka.ssl_cafile)
    [mount] = [m for m in worker["volumeMounts"] if m["mountPath"] == str(cafile.parent)]
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    ca_key = next(i["key"] for i in volume["secret"]["items"] if i["path"] == cafile.name)
    ca_secret = volume["secret"]["secretName"]
    # KEDA reads the lag with the same credentials and CA
    secrets = {v["name"]: v["valueFrom"]["secretKeyRef"] for v in worker["env"] if "valueFrom" in v}
    keda_sasl = {
        "PLAIN": "plaintext",
        "SCRAM-SHA-256": "scram_sha256",
        "SCRAM-SHA-512": "scram_sha512",
    }
    triggers = one(resources, "ScaledObject")["spec"]["triggers"]
    assert len(triggers) == 2  # payments and payments-eur
    for trigger in triggers:
        assert trigger["metadata"]["sasl"] == keda_sasl[kafka.sasl_mechanism]
        assert trigger["metadata"]["tls"] == "enable"
        auth = one(resources, "TriggerAuthentication", trigger["authenticationRef"]["name"])
        refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
        for parameter in ("username", "password"):
            ref = secrets[f"SLUICE_KAFKA__{parameter.upper()}"]
            assert refs[parameter] == (ref["name"], ref["key"])
        assert refs["ca"] == (ca_secret, ca_key)
    assert secrets["SLUICE_WEB__TOKEN"].get("optional") is False


def test_rocksdb_overlay_is_a_statefulset_with_a_claim_per_pod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    resources = rendered_copy("rocksdb")
    _, loaded = settings_and_pipelines("rocksdb", tmp_path, monkeypatch)
    assert loaded.settings.store == "rocksdb://"
    assert not [r for r in resources if r["kind"] == "Deployment"]
    statefulset = one(resources, "StatefulSet")
    [claim] = statefulset["spec"]["volumeClaimTemplates"]
    worker = container(resources)
    data = next(m for m in worker["volumeMounts"] if m["name"] == claim["metadata"]["name"])
    assert data["mountPath"].endswith("/.sluice-data")
    pod = statefulset["spec"]["template"]["spec"]
    assert claim["metadata"]["name"] not in {v["name"] for v in pod["volumes"]}
    headless = one(resources, "Service", statefulset["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    # the same pod as the base Deployment but for the data volume and the store
    base = copy.deepcopy(workload(list(rendered("base")))["spec"]["template"])
    base["spec"]["volumes"] = [v for v in base["spec"]["volumes"] if v["name"] != "data"]
    base["spec"]["containers"][0]["env"].insert(1, {"name": "SLUICE_STORE", "value": "rocksdb://"})
    assert statefulset["spec"]["template"] == base
