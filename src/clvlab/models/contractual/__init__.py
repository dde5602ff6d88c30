"""clvlab's models of contractual churn: subscribers who pay period by period and whose
cancellations the business sees, fitted by maximum likelihood.

* :class:`ShiftedBetaGeometric` — sBG: churn probability per period constant for each
  subscriber and beta-distributed across them (Fader & Hardie 2007). It fits one row per
  subscriber with ``periods`` (periods completed) and ``churned`` (False: still active).
* :func:`fit_cohorts` and :func:`score_subscribers` — one sBG per cohort, and each active
  subscriber's renewal probability, discounted residual lifetime and value.
* :class:`CovariateShiftedBetaGeometric` — sBG whose shapes move with static covariates.
* :class:`ContractualModel` — the scoring model of ``setting: contractual`` (sBG by cohort
  and pooled), which :func:`clvlab.score` scores subscriptions with.

The models are :class:`~clvlab.models.btyd.BTYDEstimator` subclasses: fitted, checked and
serialized (``to_dict``/``from_dict``) as the BTYD models are.
"""

from clvlab.models.contractual.covariates import CovariateShiftedBetaGeometric
from clvlab.models.contractual.model import ContractualModel
from clvlab.models.contractual.shifted_beta_geo import ShiftedBetaGeometric
from clvlab.models.contractual.subscribers import fit_cohorts, score_subscribers

__all__ = [
    "ContractualModel",
    "CovariateShiftedBetaGeometric",
    "ShiftedBetaGeometric",
    "fit_cohorts",
    "score_subscribers",
]
