"""Who fits a BTYD model: clvlab's own engine, or lifetimes' fitters (for parity checks).

With ``engine="lifetimes"`` lifetimes' fitter finds the parameters and the clvlab estimator
takes its fitted state there (log-likelihood, standard errors, convergence at that point), so
everything downstream (prediction, CLV, serialization) is the same for both engines.
"""

from __future__ import annotations

from typing import Literal

import pandas as pd

from clvlab.errors import ConfigError
from clvlab.models.btyd import BTYDEstimator, GammaGamma

Engine = Literal["clvlab", "lifetimes"]

#: lifetimes' fitter for each clvlab estimator; the parameter names are the same.
_LIFETIMES_FITTERS = {
    "BetaGeo": "BetaGeoFitter",
    "ModifiedBetaGeo": "ModifiedBetaGeoFitter",
    "ParetoNBD": "ParetoNBDFitter",
    "GammaGamma": "GammaGammaFitter",
}


def fit_estimator(estimator: BTYDEstimator, rfm: pd.DataFrame, engine: Engine) -> BTYDEstimator:
    """Fit ``estimator`` on an RFM table with the given engine; returns the fitted estimator."""
    if engine == "clvlab":
        return estimator.fit(rfm)
    name = type(estimator).__name__
    if name not in _LIFETIMES_FITTERS:
        raise ConfigError(
            f"lifetimes has no {name}: fit it with engine 'clvlab' (models.engine), or leave "
            "it out of models.candidates"
        )
    import lifetimes

    fitter = getattr(lifetimes, _LIFETIMES_FITTERS[name])(penalizer_coef=estimator.penalizer_coef)
    if isinstance(estimator, GammaGamma):
        repeat = rfm[rfm["frequency"] > 0]
        fitter.fit(repeat["frequency"], repeat["monetary_value"])
    else:
        fitter.fit(rfm["frequency"], rfm["recency"], rfm["T"])
    return estimator.fit(rfm, at=fitter.params_.to_dict())
