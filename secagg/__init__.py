"""Secure aggregation: Bonawitz et al. 2017 (double masking, Shamir shares, dropouts at every
stage) and the SecAgg+ sparse-graph variant of Bell et al. 2020, semi-honest or active."""

from privagg.identity import Identities, Roster, SigningKey
from secagg.config import SecAgg
from secagg.round import ACTIVE_SPARSE_STAGES, ACTIVE_STAGES, STAGES, RoundParameters

__all__ = ["SecAgg", "RoundParameters", "STAGES", "ACTIVE_STAGES", "ACTIVE_SPARSE_STAGES", "Identities", "Roster",
           "SigningKey"]
