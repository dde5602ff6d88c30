"""clvlab: customer lifetime value from transactions.

BTYD models (BG/NBD, Gamma-Gamma) fitted on historical transactions, evaluated on a holdout,
tracked in MLflow and scored per customer: p_alive, p_churn, expected purchases, expected
spend, expected revenue and CLV.

The public API is imported lazily, so that ``import clvlab`` (and ``clvlab --help``) is fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from clvlab.errors import ClvlabError, ClvlabWarning, ConfigError, DataError

__version__ = "0.1.0"

_LAZY = {
    "train": "clvlab.training",
    "TrainResult": "clvlab.training",
    "score": "clvlab.scoring",
    "score_to_file": "clvlab.batch",
    "load_model": "clvlab.tracking",
    "read_transactions": "clvlab.data",
    "clean_transactions": "clvlab.data",
    "CleaningPolicy": "clvlab.data",
    "read_links": "clvlab.data",
    "resolve_identities": "clvlab.data",
    "read_subscriptions": "clvlab.data",
    "subscriber_periods": "clvlab.data",
    "rfm": "clvlab.features",
    "calibration_holdout": "clvlab.features",
    "load_config": "clvlab.config",
    "RunConfig": "clvlab.config",
    "CLVModel": "clvlab.models.clv",
    "ProfileStore": "clvlab.profiles",
    "BetaGeo": "clvlab.models.btyd",
    "GammaGamma": "clvlab.models.btyd",
    "ModifiedBetaGeo": "clvlab.models.btyd",
    "ParetoNBD": "clvlab.models.btyd",
    "BetaGeoBetaBinom": "clvlab.models.btyd",
    "MBGCNBD": "clvlab.models.btyd",
    "GGompertzNBD": "clvlab.models.btyd",
    "ShiftedBetaGeometric": "clvlab.models.contractual",
    "ContractualModel": "clvlab.models.contractual",
}

__all__ = [
    "MBGCNBD",
    "BetaGeo",
    "BetaGeoBetaBinom",
    "CLVModel",
    "CleaningPolicy",
    "ClvlabError",
    "ClvlabWarning",
    "ConfigError",
    "ContractualModel",
    "DataError",
    "GGompertzNBD",
    "GammaGamma",
    "ModifiedBetaGeo",
    "ParetoNBD",
    "ProfileStore",
    "RunConfig",
    "ShiftedBetaGeometric",
    "TrainResult",
    "__version__",
    "calibration_holdout",
    "clean_transactions",
    "load_config",
    "load_model",
    "read_links",
    "read_subscriptions",
    "read_transactions",
    "resolve_identities",
    "rfm",
    "score",
    "score_to_file",
    "subscriber_periods",
    "train",
]

if TYPE_CHECKING:
    from clvlab.batch import score_to_file
    from clvlab.config import RunConfig, load_config
    from clvlab.data import (
        CleaningPolicy,
        clean_transactions,
        read_links,
        read_subscriptions,
        read_transactions,
        resolve_identities,
        subscriber_periods,
    )
    from clvlab.features import calibration_holdout, rfm
    from clvlab.models.btyd import (
        MBGCNBD,
        BetaGeo,
        BetaGeoBetaBinom,
        GammaGamma,
        GGompertzNBD,
        ModifiedBetaGeo,
        ParetoNBD,
    )
    from clvlab.models.clv import CLVModel
    from clvlab.models.contractual import ContractualModel, ShiftedBetaGeometric
    from clvlab.profiles import ProfileStore
    from clvlab.scoring import score
    from clvlab.tracking import load_model
    from clvlab.training import TrainResult, train


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'clvlab' has no attribute {name!r}")
