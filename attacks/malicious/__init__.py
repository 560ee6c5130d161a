"""A malicious server against secure aggregation: what ``security="active"`` buys.

Section 5 of the attacks issue, and the one part of :mod:`attacks` that names a protocol: these
attacks deviate from SecAgg's own message flow, so they drive real :mod:`secagg` sessions by
hand (:mod:`attacks.malicious.harness`) instead of going through a mode's disclosure.

* (a) :func:`model_inconsistency`: one client gets a crafted model whose update lands where no
  other client's does; read from the aggregate. Caught by active security (model digests).
* (b) :func:`forged_dropout`: the target "survived" for some clients and "dropped" for the
  others, so the server gets both of its secrets and unmasks it. Stopped by the threshold
  alone when ``2t > n`` and no client colludes; caught by the consistency check of active
  security while ``2 * quorum > n + colluders``; succeeds against both beyond that.
* (c) :func:`trap_weights`: the same imprint model (Fowl et al. 2022) to everyone; single
  inputs read out of the aggregate. Not detectable by the protocol, and reported as such.

Against protocol v2 (each on :class:`~attacks.malicious.forge.Forge`, a server that writes every
message itself and can run several sessions of a client under one announced round):

* (d) :func:`roster_shrink`: a round of the target and its accomplices only;
* (e) :func:`replay`: old advertisements (and consistency signatures) from a session of the same round;
* (f) :func:`graph_grinding` (SecAgg+): a graph seed that surrounds the target with colluders;
* (g) :func:`neighbour_omission` (SecAgg+): the target's honest neighbours hidden from it;
* (h) :func:`second_session_split`: the consistency check split across two views of one round,
  by second sessions of some clients. Stopped in active mode by shares bound to the session
  digest ``S``;
* (i) :func:`session_difference`: the same round run twice, the target dropped in the second.
  Stopped in every mode by the clients' ledger v2 (:mod:`privagg.ledger`: a masked input once
  per encoded update, whatever the round id or digest), the ``zeros=True`` (-0.0) variant too;
  ``nudge=True`` changes every weight by one ulp, which moves a few encoded values (a new input)
  and gets past it, exactly to the encoding's step, against active security too: the ledger's
  stated limit; ``rounding="stochastic"`` encodes the same update to other integers in each
  session and gets the plain difference past it (row l), against active security too;
* (k) :func:`unmasking_split`: the difference with each session unmasked by a different group
  (``2t - n`` colluders): past the ledger v1, refused by v2 (claimed before the masked input).

:func:`run_malicious_suite` runs them all against semi-honest and active secure aggregation in
one setting (:func:`make_setting`) next to an honest-but-curious baseline; the audit report
carries its table.
"""

from attacks.malicious.difference import session_difference
from attacks.malicious.forge import Forge, Session
from attacks.malicious.forged_dropout import forged_dropout, unmask_individual
from attacks.malicious.graph_grinding import graph_grinding
from attacks.malicious.harness import HandDrivenRound, client_data, client_updates, model_digest
from attacks.malicious.honest import honest_server
from attacks.malicious.imprint import TrapLayout, arm, disarm, recover_inputs, trap_model
from attacks.malicious.inconsistency import model_inconsistency
from attacks.malicious.neighbour_omission import neighbour_omission
from attacks.malicious.outcome import RECOVERED_DB, MaliciousOutcome, Recovery, score_recovery
from attacks.malicious.replay import replay
from attacks.malicious.roster_shrink import roster_shrink
from attacks.malicious.second_session import second_session_split
from attacks.malicious.setting import Setting, make_setting
from attacks.malicious.split_unmask import unmasking_split
from attacks.malicious.suite import MaliciousRow, MaliciousSuite, run_malicious_suite
from attacks.malicious.trap_weights import trap_weights

__all__ = [
    "forged_dropout", "unmask_individual", "HandDrivenRound", "client_data", "client_updates", "model_digest",
    "honest_server", "TrapLayout", "arm", "disarm", "recover_inputs", "trap_model", "model_inconsistency",
    "RECOVERED_DB", "MaliciousOutcome", "Recovery", "score_recovery", "Setting", "make_setting", "MaliciousRow",
    "MaliciousSuite", "run_malicious_suite", "trap_weights", "Forge", "Session", "roster_shrink", "replay",
    "graph_grinding", "neighbour_omission", "second_session_split", "session_difference", "unmasking_split",
]
