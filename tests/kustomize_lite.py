"""Render deploy/kubernetes/ the way `kubectl apply -k` would, for the tests (no kustomize
binary here).

Only what our kustomizations use is implemented, and a kustomization field outside it is
an error, never silently skipped: `resources` (files and directories), `configMapGenerator`
(`files`, `literals`; behaviors create, replace, merge; the content-hash name suffix and the
references to it in pod templates), `patches` (strategic merge, from `path` or inline
`patch`, `$patch: delete`; RFC 6902 JSON patches with a `target`) and `images`.

Strategic merge follows the Kubernetes rules for what we patch: maps merge key by key, a
null deletes, lists of built-in kinds merge by their merge key (containers, env and
volumes by `name`, volume mounts by `mountPath`), every other list (and every list of a
custom resource, which has no merge keys) is replaced; patching `ports` is an error (its
merge key depends on the kind).

    python -m tests.kustomize_lite render deploy/kubernetes/overlays/secured
    python -m tests.kustomize_lite sync-rules     # prometheusrule.yaml from alerts.yml
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
KUBERNETES = ROOT / "deploy" / "kubernetes"
ALERTS = ROOT / "config" / "prometheus" / "alerts.yml"
PROMETHEUS_RULE = KUBERNETES / "base" / "prometheusrule.yaml"

Resource = dict[str, Any]
SUPPORTED = {"apiVersion", "kind", "resources", "configMapGenerator", "patches", "images"}
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
}
# lists whose merge key depends on where they are (a container's ports merge by
# containerPort, a Service's by port): patching them is not implemented here
AMBIGUOUS_LISTS = {"ports"}
GENERATED = "_generated"  # internal marker on generated ConfigMaps until the names are final
POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


class KustomizeError(Exception):
    pass


def render(directory: Path) -> list[Resource]:
    """The resources `kubectl kustomize DIRECTORY` prints, in order."""
    resources = _build(directory)
    _name_generated(resources)
    return resources


def _build(directory: Path) -> list[Resource]:
    file = directory / "kustomization.yaml"
    spec = yaml.safe_load(file.read_text())
    unknown = set(spec) - SUPPORTED
    if unknown:
        raise KustomizeError(f"{file}: not implemented here: {sorted(unknown)}")
    resources: list[Resource] = []
    for entry in spec.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            resources += _build(path)
        else:
            resources += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for generator in spec.get("configMapGenerator", []):
        _generate(directory, generator, resources)
    for patch in spec.get("patches", []):
        _patch(directory, patch, resources)
    for image in spec.get("images", []):
        _set_image(image, resources)
    return resources


def _generate(directory: Path, generator: dict[str, Any], resources: list[Resource]) -> None:
    unknown = set(generator) - {"name", "files", "literals", "behavior"}
    if unknown:
        raise KustomizeError(f"configMapGenerator: not implemented here: {sorted(unknown)}")
    data: dict[str, str] = {}
    for entry in generator.get("files", []):
        key, _, source = entry.rpartition("=") if "=" in entry else ("", "", entry)
        path = directory / source
        data[key or path.name] = path.read_text()
    for literal in generator.get("literals", []):
        key, _, value = literal.partition("=")
        data[key] = value
    name, behavior = generator["name"], generator.get("behavior", "create")
    existing = [r for r in resources if r.get(GENERATED) and r["metadata"]["name"] == name]
    if behavior == "create":
        if existing:
            raise KustomizeError(f"configMapGenerator {name}: exists already (use behavior)")
        resources.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name},
                "data": data,
                GENERATED: True,
            }
        )
        return
    if not existing:
        raise KustomizeError(f"configMapGenerator {name}: nothing to {behavior}")
    target = existing[0]
    target["data"] = data if behavior == "replace" else {**target["data"], **data}


def _matches(resource: Resource, target: dict[str, Any]) -> bool:
    group, _, version = resource["apiVersion"].rpartition("/")
    return bool(
        target.get("kind", resource["kind"]) == resource["kind"]
        and target.get("name", resource["metadata"]["name"]) == resource["metadata"]["name"]
        and target.get("group", group) == group
        and target.get("version", version) == version
    )


def _patch(directory: Path, patch: dict[str, Any], resources: list[Resource]) -> None:
    unknown = set(patch) - {"path", "patch", "target"}
    if unknown:
        raise KustomizeError(f"patches: not implemented here: {sorted(unknown)}")
    text = (directory / patch["path"]).read_text() if "path" in patch else patch["patch"]
    # as kustomize: text that starts with "[" is a JSON patch in JSON, not YAML
    document = json.loads(text) if text.lstrip().startswith("[") else yaml.safe_load(text)
    if isinstance(document, list):  # RFC 6902
        if "target" not in patch:
            raise KustomizeError("a JSON patch needs a target")
        targets = [r for r in resources if _matches(r, patch["target"])]
        if not targets:
            raise KustomizeError(f"no resource matches {patch['target']}")
        for resource in targets:
            for operation in document:
                _json_patch(resource, operation)
        return
    if "target" in patch:
        target = patch["target"]
    else:  # kustomize matches a strategic-merge patch by its apiVersion, kind and name
        if "apiVersion" not in document:
            raise KustomizeError(f"a strategic-merge patch needs apiVersion: {text[:80]!r}")
        group, _, version = document["apiVersion"].rpartition("/")
        target = {
            "group": group,
            "version": version,
            "kind": document["kind"],
            "name": document["metadata"]["name"],
        }
    targets = [r for r in resources if _matches(r, target)]
    if not targets:
        raise KustomizeError(f"no resource matches {target}")
    for resource in targets:
        if document.get("$patch") == "delete":
            resources.remove(resource)
        else:
            _strategic_merge(resource, document, builtin=_is_builtin(resource))


def _is_builtin(resource: Resource) -> bool:
    group = resource["apiVersion"].rpartition("/")[0]
    return "." not in group or group.endswith(".k8s.io")


def _strategic_merge(target: dict[str, Any], patch: dict[str, Any], *, builtin: bool) -> None:
    for key, value in patch.items():
        if key == "$patch":
            continue
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _strategic_merge(target[key], value, builtin=builtin)
        elif isinstance(value, list) and builtin and key in AMBIGUOUS_LISTS:
            raise KustomizeError(f"strategic merge of {key!r}: not implemented here")
        elif isinstance(value, list) and isinstance(target.get(key), list) and key in MERGE_KEYS:
            if builtin:
                _merge_list(target[key], value, MERGE_KEYS[key], builtin=builtin)
            else:
                target[key] = copy.deepcopy(value)
        else:
            target[key] = copy.deepcopy(value)


def _merge_list(
    items: list[dict[str, Any]], patch: list[dict[str, Any]], key: str, *, builtin: bool
) -> None:
    """In place; kustomize's order: the patch's entries first (merged into the originals
    they name), then the originals the patch does not name."""
    merged = []
    for entry in patch:
        found = next((item for item in items if item.get(key) == entry.get(key)), None)
        if found is not None:
            items.remove(found)
        if entry.get("$patch") == "delete":
            continue
        if found is None:
            merged.append(copy.deepcopy(entry))
        else:
            _strategic_merge(found, entry, builtin=builtin)
            merged.append(found)
    items[:0] = merged


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"not a JSON pointer: {path!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _json_patch(resource: Resource, operation: dict[str, Any]) -> None:
    op, parts = operation["op"], _pointer(operation["path"])
    parent: Any = resource
    for part in parts[:-1]:
        parent = parent[int(part)] if isinstance(parent, list) else parent[part]
    last = parts[-1]
    if op in ("add", "replace"):
        value = copy.deepcopy(operation["value"])
        if isinstance(parent, list):
            if last == "-":
                parent.append(value)
            elif op == "add":
                parent.insert(int(last), value)
            else:
                parent[int(last)] = value
        else:
            if op == "replace" and last not in parent:
                raise KustomizeError(f"replace: nothing at {operation['path']}")
            parent[last] = value
    elif op == "remove":
        del parent[int(last) if isinstance(parent, list) else last]
    else:
        raise KustomizeError(f"JSON patch op {op!r}: not implemented here")


def _containers(resource: Resource) -> list[dict[str, Any]]:
    if resource["kind"] not in POD_TEMPLATE_KINDS:
        return []
    pod = resource["spec"]["template"]["spec"]
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def _set_image(image: dict[str, Any], resources: list[Resource]) -> None:
    for resource in resources:
        for container in _containers(resource):
            name, _, tag = container["image"].partition(":")
            if name != image["name"]:
                continue
            name = image.get("newName", name)
            tag = image.get("newTag", tag)
            container["image"] = f"{name}:{tag}" if tag else name


def _hash_suffix(config_map: Resource) -> str:
    """Ten characters of a content hash, as kustomize appends (its alphabet avoids vowels
    and look-alikes; the exact digits differ from kustomize's, which nothing relies on)."""
    body = {k: config_map[k] for k in ("kind", "data")} | {"name": config_map["metadata"]["name"]}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:10]
    return digest.translate(str.maketrans("013ae", "ghkmt"))


def _name_generated(resources: list[Resource]) -> None:
    renamed: dict[str, str] = {}
    for resource in resources:
        if resource.pop(GENERATED, False):
            old = resource["metadata"]["name"]
            renamed[old] = f"{old}-{_hash_suffix(resource)}"
            resource["metadata"]["name"] = renamed[old]
    for resource in resources:
        if resource["kind"] not in POD_TEMPLATE_KINDS:
            continue
        pod = resource["spec"]["template"]["spec"]
        for volume in pod.get("volumes", []):
            sources = [volume, *volume.get("projected", {}).get("sources", [])]
            for source in sources:
                if "configMap" in source:
                    name = source["configMap"]["name"]
                    source["configMap"]["name"] = renamed.get(name, name)
        for container in _containers(resource):
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {}).get("configMapKeyRef")
                if ref:
                    ref["name"] = renamed.get(ref["name"], ref["name"])
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef")
                if ref:
                    ref["name"] = renamed.get(ref["name"], ref["name"])


class _BlockStrings(yaml.SafeDumper):
    pass


def _block_string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockStrings.add_representer(str, _block_string)


def prometheus_rule_text() -> str:
    """deploy/kubernetes/base/prometheusrule.yaml: alerts.yml's groups, unchanged."""
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "sluice",
            "labels": {"app.kubernetes.io/name": "sluice", "app.kubernetes.io/component": "worker"},
        },
        "spec": {"groups": groups},
    }
    header = (
        "# Generated from config/prometheus/alerts.yml: python -m tests.kustomize_lite sync-rules\n"
        "# (tests/unit/test_kubernetes.py fails when the two differ)\n"
    )
    return header + yaml.dump(rule, Dumper=_BlockStrings, sort_keys=False, width=100)


def main(argv: list[str]) -> int:
    if argv[:1] == ["sync-rules"]:
        PROMETHEUS_RULE.write_text(prometheus_rule_text())
        print(f"wrote {PROMETHEUS_RULE.relative_to(ROOT)}")
        return 0
    if argv[:1] == ["render"] and len(argv) == 2:
        print(yaml.safe_dump_all(render(Path(argv[1])), sort_keys=False), end="")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
