"""Models of customer value: BTYD purchase (BG/NBD) and spend (Gamma-Gamma) models."""

from clvlab.models.btyd import BetaGeo, GammaGamma

__all__ = ["BetaGeo", "GammaGamma"]
