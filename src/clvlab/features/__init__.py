"""Per-customer features at an as-of date."""

from clvlab.features.rfm import calibration_holdout, rfm

__all__ = ["calibration_holdout", "rfm"]
