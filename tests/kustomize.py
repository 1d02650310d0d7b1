"""The real kustomize, pinned, rendering deploy/kubernetes/ for the tests as
`kubectl apply -k` would.

kustomize is a Go module (sigs.k8s.io/kustomize/kustomize/v5): `make kustomize` (which
.ci/run calls) go-installs the pinned version into ~/.cache/sluice/bin, about a minute
once, a version check afterwards. `$TESTS_KUSTOMIZE` names another binary. Without it the
Kubernetes tests fail with the command that installs it, never skip.

    python -m tests.kustomize install      # the pinned kustomize into the cache
    python -m tests.kustomize sync-rules   # prometheusrule.yaml from alerts.yml
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
KUBERNETES = ROOT / "deploy" / "kubernetes"
ALERTS = ROOT / "config" / "prometheus" / "alerts.yml"
PROMETHEUS_RULE = KUBERNETES / "base" / "prometheusrule.yaml"
KUSTOMIZE_VERSION = "v5.7.1"
KUSTOMIZE_MODULE = "sigs.k8s.io/kustomize/kustomize/v5"
BINARY_VARIABLE = "TESTS_KUSTOMIZE"

Resource = dict[str, Any]


class MissingKustomize(RuntimeError):
    """The pinned kustomize is not installed; the message says how to install it."""


class KustomizeError(RuntimeError):
    """kustomize refused a kustomization; the message is kustomize's."""


def cache_bin() -> Path:
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache_home / "sluice" / "bin"


def _version(binary: Path) -> str | None:
    try:
        done = subprocess.run(
            [str(binary), "version"], capture_output=True, text=True, timeout=60, check=False
        )
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@cache
def kustomize_binary() -> Path:
    """`$TESTS_KUSTOMIZE`, else the cache's kustomize; raises MissingKustomize unless it is
    there and the pinned version (another version may render differently)."""
    override = os.environ.get(BINARY_VARIABLE)
    binary = Path(override).expanduser() if override else cache_bin() / "kustomize"
    version = _version(binary)
    if version != KUSTOMIZE_VERSION:
        found = "is not installed" if version is None else f"is {version}"
        raise MissingKustomize(
            f"kustomize {KUSTOMIZE_VERSION} is needed to render deploy/kubernetes/, and "
            f"{binary} {found}: run `make kustomize` (go install {KUSTOMIZE_MODULE}@"
            f"{KUSTOMIZE_VERSION} into {cache_bin()}, about a minute; needs Go), or set "
            f"{BINARY_VARIABLE} to a kustomize {KUSTOMIZE_VERSION}"
        )
    return binary


def install() -> Path:
    """go-installs the pinned kustomize into the cache unless it is already there."""
    target = cache_bin() / "kustomize"
    if _version(target) == KUSTOMIZE_VERSION:
        return target
    go = shutil.which("go")
    if go is None:
        raise MissingKustomize(
            "`go` is not on the PATH to install kustomize; on Debian: apt-get install golang-go"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [go, "install", f"{KUSTOMIZE_MODULE}@{KUSTOMIZE_VERSION}"],
        env={**os.environ, "GOBIN": str(target.parent)},
        check=True,
        timeout=1800,
    )
    kustomize_binary.cache_clear()
    return target


def render(directory: Path) -> list[Resource]:
    """The resources `kustomize build DIRECTORY` prints, in its order."""
    done = subprocess.run(
        [str(kustomize_binary()), "build", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise KustomizeError(done.stderr.strip())
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


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
        "# Generated from config/prometheus/alerts.yml: python -m tests.kustomize sync-rules\n"
        "# (tests/unit/test_kubernetes.py fails when the two differ)\n"
    )
    return header + yaml.dump(rule, Dumper=_BlockStrings, sort_keys=False, width=100)


def main(argv: list[str]) -> int:
    try:
        if argv == ["install"]:
            print(f"kustomize {KUSTOMIZE_VERSION}: {install()}")
            return 0
        if argv == ["sync-rules"]:
            PROMETHEUS_RULE.write_text(prometheus_rule_text())
            print(f"wrote {PROMETHEUS_RULE.relative_to(ROOT)}")
            return 0
    except (MissingKustomize, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
