"""`sluice replay --input [STREAM=]FILE`: which topic each input file stands for.

A YAML pipeline names topics; a .sql file names its declared streams, whose topics the
statements read. An input without `STREAM=` feeds the one topic the pipelines read from
outside (a join's source when the pipeline reads two streams)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from models.pipeline_spec import PipelineSpec
from streams.core.errors import SluiceError
from streams.sql.compiler import SqlProgram, load_sql_program


def replay_inputs(
    pipeline_file: Path, specs: Sequence[PipelineSpec], values: Sequence[str]
) -> dict[str, str]:
    """topic → file for every `--input` (errors name the input and what would fit)."""
    program = load_sql_program(pipeline_file) if pipeline_file.suffix.lower() == ".sql" else None
    if len(specs) == 1 and (len(values) > 1 or specs[0].join is not None):
        return _stream_inputs(specs[0], values, program)
    inputs: dict[str, str] = {}
    for value in values:
        topic, path = sql_input(program, value) if program else topic_input(specs, value)
        if topic in inputs:
            raise SluiceError(f"two --input for stream {topic!r}: one file per stream")
        inputs[topic] = path
    return inputs


def _stream_inputs(
    spec: PipelineSpec, values: Sequence[str], program: SqlProgram | None
) -> dict[str, str]:
    """A pipeline that reads two streams (a join): `STREAM=FILE` for each (a topic, or in
    a .sql file a declared stream's name); an input without `STREAM=` feeds the source."""
    topics = {r.name.text.lower(): r.topic for r in program.relations} if program else {}
    inputs: dict[str, str] = {}
    for value in values:
        stream, sep, path = value.rpartition("=")
        topic = topics.get(stream.lower(), stream) if sep and stream else spec.source.topic
        if topic in inputs:
            raise SluiceError(
                f"two --input for stream {topic!r}: one per stream the pipeline reads"
            )
        inputs[topic] = path if sep else value
    return inputs


def sql_input(program: SqlProgram, value: str) -> tuple[str, str]:
    """`--input [STREAM=]FILE` of a SQL file: the topic of the declared stream it feeds,
    and the file. The stream may be left out when the file declares only one."""
    sources = program.sources
    names = ", ".join(s.name.text for s in sources) or "none"
    stream, sep, path = value.partition("=")
    if sep and stream and path:
        relation = program.relation(stream)
        if relation is not None and relation.kind == "lookup":
            raise SluiceError(
                f"--input {value}: '{stream}' is a lookup table; fill it with --table {stream}=FILE"
            )
        if relation is not None:
            return relation.topic, path
        if not Path(value).exists():
            raise SluiceError(
                f"--input {value}: '{stream}' is not a stream of {program.file} (declared: {names})"
            )
    if len(sources) != 1:
        raise SluiceError(
            f"--input {value}: {program.file} declares {len(sources)} streams ({names}); "
            f"name the one the input feeds: --input STREAM=FILE"
        )
    return sources[0].topic, value


def topic_input(specs: Sequence[PipelineSpec], value: str) -> tuple[str, str]:
    """`--input [TOPIC=]FILE` of YAML pipelines: the topic the file stands for (left out
    when only one topic read is written by none of them)."""
    written = {topic for spec in specs for topic in spec.output_topics()}
    roots = list(dict.fromkeys(s.source.topic for s in specs if s.source.topic not in written))
    topic, sep, path = value.partition("=")
    if sep and topic and path and any(s.source.topic == topic for s in specs):
        return topic, path
    if len(roots) != 1:
        raise SluiceError(
            f"--input {value}: the pipelines read {len(roots)} outside topics "
            f"({', '.join(roots) or 'none'}); name one: --input TOPIC=FILE"
        )
    return roots[0], value
