"""The simulated shop: a deterministic world of catalogue, people and behaviour, written out
exactly as a real shop would deliver it (landing event files, source database), with dirt and
ground truth. The modules, each building on the ones before it: :mod:`~jobs.simulator.spec`
(vocabulary, spec, shared helpers, calendar), :mod:`~jobs.simulator.catalogue`,
:mod:`~jobs.simulator.people`, :mod:`~jobs.simulator.behaviour` (sessions, events, orders),
:mod:`~jobs.simulator.suppressions` (the suppression list),
:mod:`~jobs.simulator.dirt` (landing plan and lines), :mod:`~jobs.simulator.landing`,
:mod:`~jobs.simulator.source_db`, :mod:`~jobs.simulator.truth` and
:mod:`~jobs.simulator.world` (the entry points)."""

from jobs.simulator.source_db import source_state
from jobs.simulator.spec import SimulationSpec, World
from jobs.simulator.truth import truth_as_of
from jobs.simulator.world import generate, materialize, published_view, simulate

__all__ = [
    "SimulationSpec",
    "World",
    "generate",
    "materialize",
    "published_view",
    "simulate",
    "source_state",
    "truth_as_of",
]
