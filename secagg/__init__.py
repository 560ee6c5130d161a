"""Secure aggregation: Bonawitz et al. 2017 (double masking, Shamir shares, dropouts at every
stage) and the SecAgg+ sparse-graph variant of Bell et al. 2020, semi-honest or active."""

from secagg.config import ACTIVE_STAGES, STAGES, RoundParameters, SecAgg
from secagg.identity import Identities, Roster

__all__ = ["SecAgg", "RoundParameters", "STAGES", "ACTIVE_STAGES", "Identities", "Roster"]
