"""The Apache Kafka fixture without a broker: prerequisites, skip or fail, configuration, TLS."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from tests.brokers import kafka_jars
from tests.brokers.apache_kafka import LISTENERS, ApacheKafka, MissingPrerequisite
from tests.brokers.plugin import REQUIRE_VARIABLE, _started
from tests.brokers.tls import make_tls


@pytest.fixture
def bare_machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No java, no mvn, an empty jar cache."""
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv(kafka_jars.HOME_VARIABLE, str(tmp_path / "kafka-home"))
    return tmp_path / "kafka-home"


def test_missing_java_and_mvn_are_named(bare_machine: Path) -> None:
    missing = kafka_jars.missing_prerequisites()
    assert len(missing) == 2
    assert "`java` is not on the PATH" in missing[0]
    assert f"jars are not in {bare_machine / 'libs'}" in missing[1]
    assert "`mvn` is not on the PATH" in missing[1]
    with pytest.raises(MissingPrerequisite, match="`mvn` is not on the PATH"):
        kafka_jars.ensure_jars()


def test_cached_jars_need_no_mvn(bare_machine: Path) -> None:
    (bare_machine / "libs").mkdir(parents=True)
    (bare_machine / "libs.sha256").write_text(kafka_jars._pom_hash() + "\n")
    assert kafka_jars.ensure_jars() == bare_machine / "libs"
    assert kafka_jars.missing_prerequisites() == [kafka_jars.missing_prerequisites()[0]]  # java
    (bare_machine / "libs.sha256").write_text("an older pom\n")
    with pytest.raises(MissingPrerequisite):
        kafka_jars.ensure_jars()


def test_the_fixture_skips_or_fails_naming_what_is_missing(
    bare_machine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(REQUIRE_VARIABLE, raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"`java` is not on the PATH.*`mvn`"):
        _started(ApacheKafka())
    monkeypatch.setenv(REQUIRE_VARIABLE, "1")
    with pytest.raises(pytest.fail.Exception, match=rf"`java`.*{REQUIRE_VARIABLE} is set"):
        _started(ApacheKafka())


def test_server_properties() -> None:
    kafka = ApacheKafka(users={"alice": "secret-1", "bob": "secret-2"}, base_port=19092)
    try:
        properties = kafka.server_properties()
        assert [item.port for item in kafka.listeners.values()] == list(range(19092, 19097))
        assert kafka.controller_port == 19097
        assert properties["listener.security.protocol.map"] == (
            "PLAINTEXT:PLAINTEXT,SSL:SSL,MTLS:SSL,SASL_SSL:SASL_SSL,"
            "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT"
        )
        assert properties["advertised.listeners"].startswith("PLAINTEXT://127.0.0.1:19092,")
        assert "CONTROLLER" not in properties["advertised.listeners"]
        assert properties["ssl.client.auth"] == "none"
        assert properties["listener.name.mtls.ssl.client.auth"] == "required"
        assert properties["ssl.keystore.type"] == properties["ssl.truststore.type"] == "PEM"
        plain = properties["listener.name.sasl_ssl.plain.sasl.jaas.config"]
        assert 'user_alice="secret-1" user_bob="secret-2";' in plain
        assert "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config" in properties
        assert properties["message.max.bytes"] == str(2 * 1_048_576 + 65_536)
        assert set(LISTENERS) == set(kafka.listeners)
    finally:
        kafka.close()
    assert not kafka.workdir.exists()


def test_settings_override_and_user_names_are_checked() -> None:
    kafka = ApacheKafka(settings={"num.partitions": "1"})
    try:
        assert kafka.server_properties()["num.partitions"] == "1"
    finally:
        kafka.close()
    with pytest.raises(ValueError, match="user 'a b'"):
        ApacheKafka(users={"a b": "x"})
    with pytest.raises(ValueError, match="user 'alice'"):
        ApacheKafka(users={"alice": 'quote"'})


def test_client_kwargs_and_sluice_settings() -> None:
    kafka = ApacheKafka(users={"alice": "pw"})
    try:
        sasl = kafka.client_kwargs("SASL_SSL")
        assert sasl["security_protocol"] == "SASL_SSL"
        assert sasl["sasl_mechanism"] == "SCRAM-SHA-512"
        assert (sasl["sasl_plain_username"], sasl["sasl_plain_password"]) == ("alice", "pw")
        assert "ssl_context" in sasl
        assert "ssl_context" not in kafka.client_kwargs("SASL_PLAINTEXT", "PLAIN")
        with pytest.raises(ValueError, match="no SASL"):
            kafka.client_kwargs("SSL", "PLAIN")
        assert kafka.sluice_settings("MTLS") == {
            "brokers": [kafka.listeners["MTLS"].url],
            "kafka": {
                "security_protocol": "SSL",
                "ssl_cafile": str(kafka.ca_file),
                "ssl_certfile": str(kafka.client_cert_file),
                "ssl_keyfile": str(kafka.client_key_file),
            },
        }
    finally:
        kafka.close()


def test_the_test_ca_signs_a_server_certificate_for_127_0_0_1(tmp_path: Path) -> None:
    files = make_tls(tmp_path)
    ca = x509.load_pem_x509_certificate(files.ca_file.read_bytes())
    server = x509.load_pem_x509_certificate(files.server_file.read_bytes())  # after the key
    client = x509.load_pem_x509_certificate(files.client_cert_file.read_bytes())
    assert files.server_file.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    for leaf in (server, client):
        public_key = ca.public_key()
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        leaf.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert files.client_key_file.stat().st_mode & 0o077 == 0
    other = make_tls(tmp_path / "other")
    with pytest.raises(InvalidSignature):
        server.verify_directly_issued_by(x509.load_pem_x509_certificate(other.ca_file.read_bytes()))
