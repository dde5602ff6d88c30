"""clvlab's own buy-till-you-die (BTYD) models, fitted by maximum likelihood.

* :class:`BetaGeo` — BG/NBD purchase and dropout model (Fader, Hardie & Lee 2005).
* :class:`ModifiedBetaGeo` — MBG/NBD: BG/NBD with dropout possible right after the first
  purchase (Batislam, Denizel & Filiztekin 2007).
* :class:`ParetoNBD` — Pareto/NBD: dropout in continuous time (Schmittlein, Morrison &
  Colombo 1987).
* :class:`GammaGamma` — spend per transaction (Colombo & Jiang 1999; Fader, Hardie & Lee 2005).
* :class:`BetaGeoBetaBinom` — BG/BB: purchases and dropout at discrete opportunities (Fader,
  Hardie & Shang 2010); it fits ``frequency, recency, n_periods``, not ``T``, so it is not one
  of the :data:`PURCHASE_MODELS`.
* :class:`MBGCNBD` — MBG/CNBD-k: MBG/NBD with Erlang-k times between purchases, for regular
  buyers, ``k`` chosen by likelihood (Platzer & Reutterer 2016); it needs ``litt`` to choose
  ``k`` (``clvlab.rfm(..., litt=True)``).
* :class:`GGompertzNBD` — GGompertz/NBD: Pareto/NBD's purchases with a Gamma-Gompertz
  lifetime, whose dropout hazard can rise with age (Bemmaor & Glady 2012).

The three purchase-and-dropout models share their interface (``fit`` and the predictions) in
:class:`PurchaseModel`; every model is a :class:`BTYDEstimator` (fitting, fitted state, JSON).
"""

from typing import TYPE_CHECKING, Any

from clvlab.errors import ConfigError
from clvlab.models.btyd.base import BTYDEstimator, convergence_warning
from clvlab.models.btyd.beta_geo import BetaGeo
from clvlab.models.btyd.beta_geo_beta_binom import BetaGeoBetaBinom
from clvlab.models.btyd.covariates import CovariateBetaGeo, CovariateParetoNBD
from clvlab.models.btyd.gamma_gamma import GammaGamma
from clvlab.models.btyd.ggompertz_nbd import GGompertzNBD
from clvlab.models.btyd.mbg_cnbd import MBGCNBD
from clvlab.models.btyd.modified_beta_geo import ModifiedBetaGeo
from clvlab.models.btyd.pareto_nbd import ParetoNBD
from clvlab.models.btyd.purchase import PurchaseModel

#: Purchase-and-dropout models by their name in a run config (``models.purchases``).
PURCHASE_MODELS: dict[str, type[PurchaseModel]] = {
    "bgnbd": BetaGeo,
    "mbgnbd": ModifiedBetaGeo,
    "pareto_nbd": ParetoNBD,
    "mbgcnbd": MBGCNBD,
    "ggompertz_nbd": GGompertzNBD,
}

#: Purchase models that fit ``litt`` too (the sum of the logs of the times between purchases).
NEEDS_LITT = frozenset({"mbgcnbd"})


if TYPE_CHECKING:
    from clvlab.models.btyd.base import BTYDConvergenceWarning


def __getattr__(name: str) -> Any:
    # BTYDConvergenceWarning derives from scikit-learn's ConvergenceWarning: made on first use
    # (see clvlab.models.btyd.base), so that importing the models does not import sklearn.
    if name == "BTYDConvergenceWarning":
        return convergence_warning()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def estimator_from_dict(state: dict[str, Any]) -> BTYDEstimator:
    """Rebuild any BTYD estimator from its ``to_dict()`` output, by the model it names."""
    classes: dict[str, type[BTYDEstimator]] = {
        cls.__name__: cls
        for cls in (*PURCHASE_MODELS.values(), GammaGamma, BetaGeoBetaBinom, MBGCNBD)
    }
    name = state.get("model")
    if name not in classes:
        raise ConfigError(f"unknown BTYD model {name!r} in a saved model; known: {sorted(classes)}")
    return classes[name].from_dict(state)


__all__ = [
    "MBGCNBD",
    "NEEDS_LITT",
    "PURCHASE_MODELS",
    "BTYDConvergenceWarning",
    "BTYDEstimator",
    "BetaGeo",
    "BetaGeoBetaBinom",
    "CovariateBetaGeo",
    "CovariateParetoNBD",
    "GGompertzNBD",
    "GammaGamma",
    "ModifiedBetaGeo",
    "ParetoNBD",
    "PurchaseModel",
    "estimator_from_dict",
]
