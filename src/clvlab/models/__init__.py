"""Models of customer value.

* :mod:`clvlab.models.btyd`: clvlab's BTYD models, the purchase-and-dropout models BG/NBD,
  MBG/NBD and Pareto/NBD and the Gamma-Gamma spend model (:mod:`~clvlab.models.engines` fits
  them with clvlab's engine or lifetimes');
* :mod:`clvlab.models.gbm`: LightGBM predictors of purchases, revenue and churn over a horizon;
* :mod:`clvlab.models.historical`: the naive historical formula, the baseline;
* :mod:`clvlab.models.clv`: the scorable CLV model, which takes each target from its champion;
* :mod:`clvlab.models.statistics`: the counted distinct rows of an RFM summary, which the BTYD
  models fit as they fit the summary.
* :mod:`clvlab.models.contractual`: churn observed in subscriptions (shifted-beta-geometric).

The estimators (``BetaGeo``, ``GammaGamma``, ``MBGCNBD``, ``GGompertzNBD``, ``BetaGeoBetaBinom``,
``ShiftedBetaGeometric``) and ``SufficientStatistics`` are re-exported here.
"""

from clvlab.models.btyd import MBGCNBD, BetaGeo, BetaGeoBetaBinom, GammaGamma, GGompertzNBD
from clvlab.models.contractual import ShiftedBetaGeometric
from clvlab.models.statistics import SufficientStatistics

__all__ = [
    "MBGCNBD",
    "BetaGeo",
    "BetaGeoBetaBinom",
    "GGompertzNBD",
    "GammaGamma",
    "ShiftedBetaGeometric",
    "SufficientStatistics",
]
