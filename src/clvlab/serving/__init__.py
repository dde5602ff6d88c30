"""The pyfunc form of a model and clvlab's model server: above scoring, since both score.

* :mod:`clvlab.serving.packaging`: the model folder MLflow logs and loads (``write_model``,
  ``export_model``), running :mod:`clvlab.serving.pyfunc_model`;
* :mod:`clvlab.serving.served`: what ``clvlab serve`` serves (a registered model's version, a
  model URI or a folder);
* :mod:`clvlab.serving.server`, :mod:`clvlab.serving.workers` and
  :mod:`clvlab.serving.invocations`: the HTTP server, its worker processes and one request.

Runs and the registry are :mod:`clvlab.tracking`'s, below scoring; loading a model back is
:func:`clvlab.load_model`. The submodules are imported on first use, so that a worker process
starts with what it needs only.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {"export_model": "clvlab.serving.packaging", "write_model": "clvlab.serving.packaging"}

__all__ = ["export_model", "write_model"]

if TYPE_CHECKING:
    from clvlab.serving.packaging import export_model, write_model


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'clvlab.serving' has no attribute {name!r}")
