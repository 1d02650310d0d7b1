"""`free_port` picks below the kernel's ephemeral range, where no outgoing connection can
take the port before the server binds it (the cause of a CI failure)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from streams.runtime import broker
from streams.runtime.broker import free_port


def test_the_port_is_below_the_ephemeral_range_and_bindable() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = {free_port() for _ in range(20)}
    assert all(1024 <= port < low for port in ports)
    assert len(ports) > 1  # random, so two servers started at once rarely pick one port
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
            server.bind(("127.0.0.1", port))


def test_without_the_range_file_the_kernel_picks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(broker, "_EPHEMERAL_RANGE", tmp_path / "absent")
    low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    assert low <= free_port() <= high


def test_a_taken_port_is_never_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        monkeypatch.setattr(broker, "_ports_below_ephemeral", lambda: range(taken, taken + 2))
        assert {free_port() for _ in range(10)} == {taken + 1}
