"""What ``clvlab serve`` serves: a registered model's version, a model URI or a folder.

The server itself is :mod:`clvlab.serving.server`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from clvlab.errors import ClvlabError
from clvlab.tracking import CHAMPION

if TYPE_CHECKING:
    from clvlab.models.saved import ScoringModel


def model_uri(model: str, alias: str = CHAMPION) -> str:
    """``models:/NAME@ALIAS`` for a registered model name; a URI or a folder as it is."""
    if "://" in model or model.startswith(("models:/", "runs:/")) or Path(model).exists():
        return model
    if "/" in model or "\\" in model:  # registered names have no slashes: a folder was meant
        raise ClvlabError(
            f"no model folder {model!r} (and a registered model name has no '/'); give an "
            "existing folder, a registered model's name or a model URI (runs:/..., models:/...)"
        )
    return f"models:/{model}@{alias}"


def load_served_model(model: str, alias: str = CHAMPION) -> tuple[ScoringModel, str]:
    """Load the model to serve (see :func:`model_uri`; a contractual model too) and say what
    it is, e.g. ``models:/cdnow@champion (version 3)``; a ClvlabError in one line if there
    is none."""
    from clvlab.tracking import load_scoring_model

    uri = model_uri(model, alias)
    loaded = load_scoring_model(uri)
    version = loaded.version
    if uri.startswith("models:/") and version.startswith("models:/"):
        return loaded, f"{uri} (version {version.rsplit('/', 1)[-1]})"
    return loaded, f"{uri} ({version})" if version and version != uri else uri
