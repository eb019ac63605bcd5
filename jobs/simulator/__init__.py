"""The simulated shop: a deterministic world of catalogue, people and behaviour, written out
exactly as a real shop would deliver it (landing event files, source database), with dirt and
ground truth."""

from jobs.simulator.core import (  # noqa: F401
    SimulationSpec,
    World,
    generate,
    materialize,
    published_view,
    simulate,
    source_state,
    truth_as_of,
)
