"""Serve a model over HTTP with ``mlflow models serve``: ``clvlab serve NAME``.

The server answers ``POST /invocations`` with the score table of the posted transactions (see
:mod:`clvlab.tracking.pyfunc_model`) and ``GET /ping`` with 200 once the model is loaded.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import NoReturn

from clvlab.errors import ClvlabError
from clvlab.tracking.registry import CHAMPION

#: Where the running interpreter's console scripts are (mlflow, uvicorn).
_SCRIPTS = Path(sys.executable).parent


def model_uri(model: str, alias: str = CHAMPION) -> str:
    """``models:/NAME@ALIAS`` for a registered model name; a URI or a folder as it is."""
    if "://" in model or model.startswith(("models:/", "runs:/")) or Path(model).exists():
        return model
    return f"models:/{model}@{alias}"


def serve_command(
    model: str,
    *,
    alias: str = CHAMPION,
    host: str = "127.0.0.1",
    port: int = 5000,
    workers: int | None = None,
) -> list[str]:
    """The ``mlflow models serve`` command line for ``model`` (see :func:`model_uri`), in
    this environment (``--env-manager local``: no new virtualenv is built)."""
    mlflow = _SCRIPTS / "mlflow"
    if not mlflow.exists():
        found = shutil.which("mlflow")
        if found is None:
            raise ClvlabError("the mlflow command is not installed in this environment")
        mlflow = Path(found)
    command = [str(mlflow), "models", "serve", "-m", model_uri(model, alias)]
    command += ["--env-manager", "local", "-h", host, "-p", str(port)]
    if workers is not None:
        command += ["-w", str(workers)]
    return command


def check_registered(model: str, alias: str = CHAMPION) -> None:
    """Raise a clear error if ``model`` is a registered name without a version at ``alias``
    (``mlflow models serve`` would fail with a stack trace)."""
    uri = model_uri(model, alias)
    if not uri.startswith("models:/") or "@" not in uri:
        return
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from clvlab.tracking import _use_tracking_store

    _use_tracking_store()
    name, alias = uri.removeprefix("models:/").split("@", 1)
    try:
        MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException:
        raise ClvlabError(
            f"no version of registered model {name!r} has the alias {alias!r}; "
            f"`clvlab models {name}` lists the versions, `clvlab train --register {name}` "
            "registers one"
        ) from None


def serve(
    model: str,
    *,
    alias: str = CHAMPION,
    host: str = "127.0.0.1",
    port: int = 5000,
    workers: int | None = None,
) -> NoReturn:
    """Replace this process by the model server (see :func:`serve_command`); it runs until
    stopped (Ctrl-C). The interpreter's scripts folder goes first on ``PATH``, because
    MLflow starts ``uvicorn`` by name, and the tracking store is clvlab's
    (:func:`clvlab.tracking.tracking_uri`)."""
    from clvlab.tracking import tracking_uri

    check_registered(model, alias)
    command = serve_command(model, alias=alias, host=host, port=port, workers=workers)
    env = {
        **os.environ,
        "PATH": f"{_SCRIPTS}{os.pathsep}{os.environ.get('PATH', '')}",
        # models:/ and runs:/ URIs are looked up in clvlab's store, as by `clvlab score`.
        "MLFLOW_TRACKING_URI": tracking_uri(),
    }
    sys.stdout.flush()
    os.execve(command[0], command, env)
