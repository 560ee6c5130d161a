"""attacks: what an adversary recovers from each aggregation mode, measured on real rounds.

Layout (one idea per module):

* :mod:`attacks.data`, :mod:`attacks.models`: bundled offline data sets (digits, breast
  cancer, MNIST-5k), member/non-member splits, client partitions; small torch models.
* :mod:`attacks.modes`: any registered mode built for a round's size (``make_mode``).
* :mod:`attacks.training`: FedAvg in-process, each round aggregated by any mode through
  :func:`privagg.simulate`, keeping every round's result and server view.
* :mod:`attacks.adversary`: from a view and a threat model to what the adversary can compute,
  through the mode's own :meth:`~privagg.Aggregator.disclose`, and which target to attack.
* :mod:`attacks.membership`: LOSS, LiRA (online/offline, fixed variance), RMIA; ROC metrics.
* :mod:`attacks.inversion`: DLG, iDLG, Inverting Gradients; PSNR, SSIM, label accuracy.
* :mod:`attacks.plots`: log-log ROC curves and reconstruction grids as PNG.

Nothing here names a mode: a mode registered later is attacked through the same path.
Requires the ``attacks`` extra (torch, scikit-learn, scikit-image, matplotlib, mlxtend).

One mode, one threat model, both kinds of attack::

    digits = load_dataset("digits")
    split = membership_split(digits, test_size=300, seed=0)
    model = make_model("mlp", digits, seed=0)
    build = mode_factory("secagg", clients=5, dimension=model_dimension(model))
    config = FedAvgConfig(rounds=30, local_epochs=2, lr=0.1)
    run = train_fedavg(model, digits, partition(split.member_indices, 5), build(), config,
                       test_indices=split.test)                      # run.accuracy, run.epsilon

    from attacks.membership import fedavg_trainer, lira, membership_metrics, train_shadow_models
    shadows = train_shadow_models(fedavg_trainer(digits, lambda s: make_model("mlp", digits, seed=s), 5,
                                                 config, build), split.pool, 16)
    membership_metrics(lira(run.model, shadows, digits), split.members).as_dict()

    from attacks.inversion import fedsgd_round, invert_round
    aggregator = build()
    one_round = fedsgd_round(model, digits, [[i] for i in split.member_indices[:10]], aggregator)
    invert_round(aggregator, one_round, privagg.HONEST_BUT_CURIOUS, digits, method="ig").as_dict()
"""

from attacks.adversary import InversionTarget, disclosed_models, disclosure, inversion_target
from attacks.data import DATASETS, Dataset, MembershipSplit, load_dataset, membership_split, partition
from attacks.models import MLP, SmallCNN, make_model
from attacks.modes import make_mode, mode_factory, model_dimension
from attacks.training import FedAvgConfig, RoundRecord, TrainingRun, clip_update, evaluate, train_fedavg
from attacks.audit import DEFAULT_ATTACKS, run_audit, summary_table

__all__ = [
    "InversionTarget", "disclosed_models", "disclosure", "inversion_target", "DATASETS", "Dataset",
    "MembershipSplit", "load_dataset", "membership_split", "partition", "MLP", "SmallCNN", "make_model",
    "FedAvgConfig", "RoundRecord", "TrainingRun", "clip_update", "evaluate", "train_fedavg", "make_mode",
    "mode_factory", "model_dimension", "DEFAULT_ATTACKS", "run_audit", "summary_table",
]
