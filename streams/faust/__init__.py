"""sluice pipelines as agents of a Faust app (`attach`), state in Faust tables.

The only package of sluice that imports faust; every patch of Faust sluice needs lives
here with its reason beside it. See docs/faust.md.
"""

from streams.faust.attach import FaustHostError, attach, host_of

__all__ = ["FaustHostError", "attach", "host_of"]
