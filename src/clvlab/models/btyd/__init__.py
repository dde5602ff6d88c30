"""clvlab's own buy-till-you-die (BTYD) models, fitted by maximum likelihood.

* :class:`BetaGeo` — BG/NBD purchase and dropout model (Fader, Hardie & Lee 2005).
* :class:`GammaGamma` — spend per transaction (Colombo & Jiang 1999; Fader, Hardie & Lee 2005).
"""

from clvlab.models.btyd.base import BTYDConvergenceWarning, BTYDEstimator
from clvlab.models.btyd.beta_geo import BetaGeo
from clvlab.models.btyd.gamma_gamma import GammaGamma

__all__ = ["BTYDConvergenceWarning", "BTYDEstimator", "BetaGeo", "GammaGamma"]
