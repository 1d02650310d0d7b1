"""What replay writes: one JSON Lines file per topic, dead letters in their replay form."""

from __future__ import annotations

import base64
from contextlib import ExitStack
from operator import attrgetter
from pathlib import Path
from typing import IO

import orjson

from models.envelopes import DeadLetterError, ReplayDeadLetter
from streams.core import jsonl
from streams.core.records import BatchResult, DeadLetter

_VALUE = attrgetter("value")


class OutputFiles:
    """One JSON Lines file per topic, opened (truncated) on first write."""

    def __init__(self, directory: Path, stack: ExitStack) -> None:
        self.directory = directory
        self.stack = stack
        self.files: dict[str, IO[bytes]] = {}

    def handle(self, topic: str) -> IO[bytes]:
        handle = self.files.get(topic)
        if handle is None:
            path = self.directory / f"{topic}.jsonl"
            handle = self.files[topic] = self.stack.enter_context(path.open("wb"))
        return handle

    def write(self, result: BatchResult, dead_letter_topic: str) -> None:
        for topic, events in result.outputs.items():
            if events:
                self.handle(topic).write(jsonl.dumps_lines(list(map(_VALUE, events))))
        if result.dead_letters:
            handle = self.handle(dead_letter_topic)
            handle.write(
                b"".join([dead_letter_line(letter) + b"\n" for letter in result.dead_letters])
            )

    @property
    def paths(self) -> list[Path]:
        return [self.directory / f"{topic}.jsonl" for topic in self.files]


def dead_letter_line(letter: DeadLetter) -> bytes:
    """The replay form of a dead letter: the original line as text, or base64 (with
    `"payload_encoding": "base64"`) when its bytes are not UTF-8, so nothing is lost.
    The JSON of `models.envelopes.ReplayDeadLetter` (tests hold them equal), written with
    orjson: ~1 µs a letter instead of ~10 through the model."""
    error = {"step": letter.step, "type": letter.error_type, "message": letter.message}
    try:
        line: dict[str, str | dict[str, str]] = {
            "error": error,
            "payload": letter.raw.decode("utf-8"),
        }
    except UnicodeDecodeError:
        line = {
            "error": error,
            "payload": base64.b64encode(letter.raw).decode("ascii"),
            "payload_encoding": "base64",
        }
    try:
        return orjson.dumps(line)
    except orjson.JSONEncodeError:  # a message orjson refuses (a lone surrogate): the model's
        return _model_line(letter)


def _model_line(letter: DeadLetter) -> bytes:
    error = DeadLetterError(step=letter.step, type=letter.error_type, message=letter.message)
    try:
        envelope = ReplayDeadLetter(error=error, payload=letter.raw.decode("utf-8"))
    except UnicodeDecodeError:
        envelope = ReplayDeadLetter(
            error=error,
            payload=base64.b64encode(letter.raw).decode("ascii"),
            payload_encoding="base64",
        )
    return envelope.model_dump_json(exclude_none=True).encode()
