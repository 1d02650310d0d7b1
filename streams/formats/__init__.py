"""Record formats beyond JSON: the Confluent wire format (byte 0, a 4-byte big-endian schema
id, the encoded value) with Avro, Protobuf or JSON Schema schemas kept in a schema registry.

Pure code: decoders and encoders are built from schema text the runtime fetched
(`streams.runtime.schema_registry`), so this package never does I/O. Decoded values are the plain
dict records every step sees (see `streams.formats.plain`).
"""
