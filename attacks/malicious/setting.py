"""One experimental setting shared by the malicious-server attacks, so that their outcomes are
comparable: the same clients holding the same images, the same honest model, the same trap.

The honest model is an MLP with ``honest_units`` ordinary hidden units and ``bins`` disarmed
trap units (:func:`attacks.malicious.imprint.trap_model`); the armed model is the same network
with the traps turned into imprint bins, thresholds taken from the server's public examples.
Clients take one full-batch FedSGD step (``lr``) on their images, which is what the recovery
formulas assume and the setting in which the issue's reference figures were measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from attacks.data import Dataset, load_dataset
from attacks.malicious.harness import ClientData, client_data
from attacks.malicious.imprint import TrapLayout, arm, trap_model
from secagg import SecAgg

__all__ = ["Setting", "make_setting"]


@dataclass(frozen=True, eq=False)
class Setting:
    """Clients, their data and the two models a server may hand out."""

    data: ClientData
    honest: nn.Module
    armed: nn.Module
    layout: TrapLayout
    lr: float = 1.0

    @property
    def dataset(self) -> Dataset:
        return self.data.dataset

    @property
    def client_ids(self) -> tuple[int, ...]:
        return tuple(sorted(self.data.parts))

    @property
    def clients(self) -> int:
        return len(self.data.parts)

    def tolerance(self, config: SecAgg) -> float:
        """Bias differences below this are rounding noise: each client's encoding errs by at
        most half a step on each of the two coordinates a difference subtracts."""
        return 4.0 * self.clients * config.encoding.resolution


def make_setting(dataset: Dataset | str = "digits", *, clients: int = 8, images_per_client: int = 1,
                 honest_units: int = 32, bins: int | None = None, lr: float = 1.0, seed: int = 0) -> Setting:
    """A setting on ``dataset`` (images only). ``bins`` defaults to four per image in the round,
    rounded up to a multiple of 8: with ``k`` bins and ``b`` images about ``exp(-b/k)`` of them
    sit alone in their bin."""
    data_set = load_dataset(dataset) if isinstance(dataset, str) else dataset
    if not data_set.is_image:
        raise ValueError(f"the malicious-server attacks reconstruct images; {data_set.name!r} is tabular")
    if bins is None:
        bins = 8 * math.ceil(4 * clients * images_per_client / 8)
    data = client_data(data_set, clients, images_per_client=images_per_client, seed=seed)
    in_features = math.prod(data_set.input_shape)
    honest, layout = trap_model(in_features, data_set.n_classes, honest_units=honest_units, bins=bins, seed=seed)
    public_x = data_set.subset(data.public)[0]
    armed = arm(honest, layout, public_x, seed=seed + 1)
    return Setting(data, honest, armed, layout, lr)
