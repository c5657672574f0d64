"""Named sweeps: each experiment of the SynFlow paper's Figure 6 with its published recipe
(``prunetui sweep --preset synflow-fig6/cifar10-vgg16-bn``), so a user's curves can be put
beside the published ones (``prunetui export --reference synflow-fig6``). No torch."""

from __future__ import annotations

from prunetui.core.errors import ConfigError
from prunetui.core.published import Experiment, load_published
from prunetui.core.sweep.spec import SweepSpec

FAMILY = "synflow-fig6"


def _name(e: Experiment) -> str:
    return f"{FAMILY}/{e.dataset}-{e.model}"


def presets() -> dict[str, Experiment]:
    """Every preset by name (``synflow-fig6/DATASET-MODEL``), in the file's order."""
    return {_name(e): e for e in load_published().experiments.values()}


def preset(name: str) -> SweepSpec:
    """The preset's sweep: the experiment's models, datasets, pruners, compressions and
    recipe, seeds 0-2 as the paper's three runs; ``ConfigError`` naming the presets for an
    unknown name, or saying why one cannot run here."""
    known = presets()
    experiment = known.get(name)
    if experiment is None:
        raise ConfigError(field="preset", value=name, choices=list(known))
    why = experiment.unsupported()
    if why:
        raise ConfigError(field="preset", value=name, problem=f"cannot run here: {why}")
    return experiment.sweep_spec(name=name.replace("/", "-"))
