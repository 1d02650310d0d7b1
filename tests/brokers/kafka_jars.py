"""The Apache Kafka jars: fetched with Maven from `kafka/pom.xml` into a cache folder.

Nothing downloaded lives in the repository. The cache (default
`~/.cache/sluice/kafka-3.9.1`, or `$TESTS_KAFKA_HOME`) holds `libs/*.jar` and a stamp with
the hash of the pom that filled it: a changed pom fetches again, an unchanged one costs a
file read. Fetching twice at once (two test sessions) is serialised by a lock file.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

KAFKA_VERSION = "3.9.1"
POM = Path(__file__).resolve().parent / "kafka" / "pom.xml"
HOME_VARIABLE = "TESTS_KAFKA_HOME"


class MissingPrerequisite(RuntimeError):
    """Something the Apache Kafka broker needs is not on this machine; the message names it."""


def kafka_home() -> Path:
    """The cache folder: `$TESTS_KAFKA_HOME`, else ~/.cache/sluice/kafka-<version>."""
    override = os.environ.get(HOME_VARIABLE)
    if override:
        return Path(override).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "sluice" / f"kafka-{KAFKA_VERSION}"


def _pom_hash() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def _cached(home: Path) -> bool:
    stamp = home / "libs.sha256"
    return stamp.is_file() and stamp.read_text().strip() == _pom_hash()


def java_binary() -> Path:
    """`$JAVA_HOME/bin/java`, else `java` on the PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return Path(java_home) / "bin" / "java"
    found = shutil.which("java")
    if found is None:
        raise MissingPrerequisite(
            "Apache Kafka needs Java 17 (`java` is not on the PATH and JAVA_HOME is not set); "
            "on Debian: apt-get install default-jre-headless"
        )
    return Path(found)


def missing_prerequisites(home: Path | None = None) -> list[str]:
    """What this machine lacks to run the broker: java; the jars, when mvn is not there to
    fetch them. Empty when all is there."""
    missing = []
    try:
        java_binary()
    except MissingPrerequisite as exc:
        missing.append(str(exc))
    home = home or kafka_home()
    if not _cached(home) and shutil.which("mvn") is None:
        missing.append(
            f"the Apache Kafka {KAFKA_VERSION} jars are not in {home / 'libs'} and `mvn` is not "
            "on the PATH to fetch them; on Debian: apt-get install maven"
        )
    return missing


def ensure_jars(home: Path | None = None, fetch: bool = True) -> Path:
    """The folder of Kafka's jars (`<home>/libs`), fetched with `mvn` first when missing or
    stale. Idempotent; a few milliseconds when cached. Raises MissingPrerequisite when the
    jars are missing and `fetch` is false or Maven is not installed, RuntimeError when
    Maven fails."""
    home = home or kafka_home()
    libs = home / "libs"
    if _cached(home):
        return libs
    if not fetch:
        raise MissingPrerequisite(f"the Apache Kafka {KAFKA_VERSION} jars are not in {libs}")
    mvn = shutil.which("mvn")
    if mvn is None:
        raise MissingPrerequisite(
            f"the Apache Kafka {KAFKA_VERSION} jars are not in {libs} and `mvn` is not on the "
            "PATH to fetch them; on Debian: apt-get install maven"
        )
    home.mkdir(parents=True, exist_ok=True)
    with (home / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session may be fetching: wait for it
        if _cached(home):
            return libs
        staging = home / f"libs.fetching-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        command = [
            mvn,
            "--batch-mode",
            "--quiet",
            "--file",
            str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
            "-DincludeScope=runtime",
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
            shutil.rmtree(staging, ignore_errors=True)
            output = (result.stdout + result.stderr).strip()[-3000:]
            raise RuntimeError(f"`{' '.join(command)}` failed ({result.returncode}):\n{output}")
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
        (home / "libs.sha256").write_text(_pom_hash() + "\n")
    return libs


def main() -> None:
    """`python -m tests.brokers.kafka_jars`: fetch the jars if needed, print their folder."""
    print(ensure_jars())


if __name__ == "__main__":
    main()
