"""The engine's phase, and the only moves between phases (as Kafka Streams' Task.State):

                 ┌──────────────────────────────┐
                 │                              ▼
    STARTING ─► REVOKING ─► ASSIGNING ─► RESTORING ─► RUNNING
        │         ▲ ↺ │                      │           │
        │          │  └──────────────────────┼───────────┤ (a rebalance)
        │          └─────────────────────────┼───────────┘
        ▼                                    ▼
    STOPPING ◄──────────── (from any phase but FAILED)    FAILED ◄── (from any phase)

- STARTING: clients started, the group being joined; nothing owned.
- REVOKING: a rebalance began: the batch in progress finished, a checkpoint taken.
- ASSIGNING: partitions handed over (exactly_once: their previous owners fenced, a new
  transactional id); committed offsets read, consumer positioned.
- RESTORING: the new partitions' state read from local copies and changelogs.
- RUNNING: batches are processed and checkpointed; the only phase that is ready.
- STOPPING: a last checkpoint, the group left; FAILED: an error ended the data path.
aiokafka calls the revoke listener at the first join too (nothing to revoke), and may
assign without a revoke (STARTING ─► ASSIGNING).
"""

from __future__ import annotations

import enum


class Phase(enum.Enum):
    STARTING = "starting"
    REVOKING = "revoking"
    ASSIGNING = "assigning"
    RESTORING = "restoring"
    RUNNING = "running"
    STOPPING = "stopping"
    FAILED = "failed"


ALLOWED: dict[Phase, frozenset[Phase]] = {
    Phase.STARTING: frozenset({Phase.REVOKING, Phase.ASSIGNING}),
    Phase.REVOKING: frozenset({Phase.REVOKING, Phase.ASSIGNING}),  # a join retried
    Phase.ASSIGNING: frozenset({Phase.RESTORING}),
    Phase.RESTORING: frozenset({Phase.RUNNING}),
    Phase.RUNNING: frozenset({Phase.REVOKING}),
    Phase.STOPPING: frozenset(),
    Phase.FAILED: frozenset(),
}
for _phase in Phase:  # stopping from anywhere alive; failing from anywhere
    if _phase is not Phase.FAILED:
        ALLOWED[_phase] = ALLOWED[_phase] | {Phase.STOPPING, Phase.FAILED}


# phases in which the owned partitions' state is restored (readiness: tables_recovered)
RECOVERED = frozenset({Phase.RUNNING, Phase.REVOKING, Phase.STOPPING})


class PhaseError(RuntimeError):
    """A move the diagram does not allow: a bug in the engine, never the input's fault."""


class PhaseMachine:
    """The current phase; `move` enforces the diagram."""

    def __init__(self) -> None:
        self.phase = Phase.STARTING
        self.history: list[Phase] = [Phase.STARTING]

    def move(self, to: Phase) -> None:
        if to is self.phase and to in (Phase.STOPPING, Phase.FAILED):
            return  # stopping twice, failing twice: nothing new
        if to not in ALLOWED[self.phase]:
            raise PhaseError(f"engine phase {self.phase.value} cannot become {to.value}")
        self.phase = to
        self.history.append(to)

    @property
    def running(self) -> bool:
        return self.phase is Phase.RUNNING

    @property
    def rebalancing(self) -> bool:
        return self.phase in (Phase.REVOKING, Phase.ASSIGNING, Phase.RESTORING)
