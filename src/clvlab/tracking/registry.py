"""The MLflow model registry: register a trained model, promote only the better one.

Every registered version carries, as version tags, the holdout metrics of its scoring model
(``holdout.<metric>``), the holdout window they were measured on and the run's provenance.
The alias ``challenger`` always points at the newest version; ``champion`` moves to it only
when it beats the current champion by the config's ``registry`` rule, on the same holdout
window (metrics of different windows are not comparable, and the decision says so).
``clvlab promote`` moves ``champion`` by hand, recording who asked and why.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import os
import random
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from clvlab.errors import ClvlabError
from clvlab.evaluation.metrics import METRICS
from clvlab.tracking import CHAMPION
from clvlab.tracking.store import describe_store, use_tracking_store

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from clvlab.config import RunConfig

CHALLENGER = "challenger"
#: The registered model whose existence is the lock on a model's aliases (:func:`registry_lock`).
LOCK_SUFFIX = ".clvlab-lock"
_METRIC_TAG = "holdout."
_WINDOW_TAG = "clvlab.holdout_window"


@dataclass
class Decision:
    """Whether a new version took the ``champion`` alias, and why.

    Attributes
    ----------
    name, version
        The registered model and the new version.
    promoted
        Whether ``champion`` now points at ``version``.
    reason
        One sentence for the log.
    comparison
        Metric -> ``{"challenger": value, "champion": value, "verdict": "better" | "worse" |
        "equal"}``, for the rule's metrics (empty without a comparable champion).
    previous_champion
        The version that was champion before, if any.
    """

    name: str
    version: str
    promoted: bool
    reason: str
    comparison: dict[str, dict[str, Any]]
    previous_champion: str | None

    def to_text(self) -> str:
        """The decision and both sets of metrics, for the terminal."""
        lines = [
            f"Registered {self.name} version {self.version} (alias {CHALLENGER}).",
            f"{CHAMPION}: {'moved to version ' + self.version if self.promoted else 'kept'}"
            f" - {self.reason}",
        ]
        for metric, row in self.comparison.items():
            lines.append(
                f"  {metric}: this version {row['challenger']:.4f}, champion version "
                f"{self.previous_champion} {row['champion']:.4f} ({row['verdict']})"
            )
        return "\n".join(lines)


def register(
    model_uri: str,
    name: str,
    *,
    run_id: str,
    config: RunConfig,
    metrics: dict[str, float],
    tags: dict[str, str],
) -> Decision:
    """Register ``model_uri`` as a new version of ``name``, point ``challenger`` at it and
    move ``champion`` to it if it beats the current champion (the config's ``registry`` rule
    on the same holdout window). The decision is logged to the run (``registry_decision.json``
    and tags) and on the version.

    Parameters
    ----------
    model_uri
        ``runs:/<run_id>/model``.
    name
        The registered model's name.
    run_id
        The training run (the decision is logged there).
    config
        The run config (its ``split`` and ``registry`` sections).
    metrics
        The scoring model's holdout metrics.
    tags
        Provenance tags for the version.
    """
    import mlflow

    use_tracking_store(config.tracking.uri)
    client = mlflow.MlflowClient()
    window = f"{config.split.calibration_end}..{config.split.holdout_end}"
    version = str(mlflow.register_model(model_uri, name).version)
    for key, value in {
        **tags,
        _WINDOW_TAG: window,
        **{f"{_METRIC_TAG}{k}": repr(float(v)) for k, v in metrics.items()},
    }.items():
        client.set_model_version_tag(name, version, key, value)

    # Registrations running at once each get their version; their aliases move one at a time.
    with registry_lock(client, name):
        newest = _alias_version(client, name, CHALLENGER)
        if newest is None or int(newest) < int(version):
            client.set_registered_model_alias(name, CHALLENGER, version)
        current = _alias_version(client, name, CHAMPION)
        decision = _decide(client, name, version, current, metrics, window, config)
        if decision.promoted:
            _move_champion(
                client, name, version, by="clvlab train (automatic)", why=decision.reason
            )
    client.log_dict(run_id, asdict(decision), "registry_decision.json")
    client.set_tag(run_id, "clvlab.registry", f"{name} version {version}")
    client.set_tag(run_id, "clvlab.registry_decision", "promoted" if decision.promoted else "kept")
    return decision


def promote(name: str, version: str, *, reason: str, by: str | None = None) -> str | None:
    """Move ``champion`` to ``version`` by hand, recording who asked (``by``, default the
    login name) and why on the version. Returns the previous champion version."""
    import mlflow

    if not reason.strip():
        raise ClvlabError("say why the version is promoted (--reason)")
    use_tracking_store()
    client = mlflow.MlflowClient()
    try:
        client.get_model_version(name, str(version))
    except mlflow.exceptions.MlflowException:
        raise ClvlabError(
            f"registered model {name!r} has no version {version}; see `clvlab models {name}`"
        ) from None
    with registry_lock(client, name):
        previous = _alias_version(client, name, CHAMPION)
        _move_champion(client, name, str(version), by=by or getpass.getuser(), why=reason)
    return previous


def versions(name: str) -> pd.DataFrame:
    """Every version of ``name``: aliases, run, creation time, holdout window and metrics,
    and the last promotion's author and reason. Newest first."""
    import mlflow

    uri = use_tracking_store()
    client = mlflow.MlflowClient()
    try:
        registered = client.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        raise ClvlabError(
            f"no registered model named {name!r} in the tracking store {describe_store(uri)}; "
            "MLFLOW_TRACKING_URI or clvlab --tracking-uri points at another store"
        ) from None
    aliases: dict[str, list[str]] = {}
    for alias, version in (registered.aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    rows = []
    for version in client.search_model_versions(f"name = '{name}'"):
        tags = version.tags or {}
        rows.append(
            {
                "version": int(version.version),
                "aliases": ",".join(sorted(aliases.get(str(version.version), []))),
                "created": pd.Timestamp(version.creation_timestamp, unit="ms"),
                "run_id": version.run_id,
                "holdout_window": tags.get(_WINDOW_TAG, ""),
                **{
                    key.removeprefix(_METRIC_TAG): float(value)
                    for key, value in tags.items()
                    if key.startswith(_METRIC_TAG)
                },
                "promoted_by": tags.get("clvlab.promoted_by", ""),
                "promotion_reason": tags.get("clvlab.promotion_reason", ""),
            }
        )
    return pd.DataFrame(rows).sort_values("version", ascending=False).reset_index(drop=True)


def _decide(
    client: MlflowClient,
    name: str,
    version: str,
    current: str | None,
    metrics: dict[str, float],
    window: str,
    config: RunConfig,
) -> Decision:
    def decision(promoted: bool, reason: str, comparison: dict | None = None) -> Decision:
        return Decision(name, version, promoted, reason, comparison or {}, current)

    if current is None:
        return decision(True, "the first version with holdout metrics: no champion yet")
    tags = client.get_model_version(name, current).tags or {}
    rule = config.registry
    if tags.get(_WINDOW_TAG) != window:
        return decision(
            False,
            f"not comparable: the champion was evaluated on the holdout "
            f"{tags.get(_WINDOW_TAG, '(unknown)')}, this version on {window}; promote by hand "
            f"with `clvlab promote {name} {version} --reason ...` after comparing them",
        )
    comparison = {}
    for metric in config.promotion_metrics:
        tagged = tags.get(f"{_METRIC_TAG}{metric}")
        if tagged is None or metric not in metrics:
            return decision(False, f"not comparable: {metric} is missing on one of the versions")
        ours, theirs = float(metrics[metric]), float(tagged)
        sign = 1.0 if METRICS[metric].greater_is_better else -1.0
        verdict = "equal" if ours == theirs else "better" if sign * (ours - theirs) > 0 else "worse"
        comparison[metric] = {"challenger": ours, "champion": theirs, "verdict": verdict}
    verdicts = [row["verdict"] for row in comparison.values()]
    if rule.rule == "all":
        promoted = "better" in verdicts and "worse" not in verdicts
        wanted = "better on at least one of the metrics and worse on none"
    else:
        promoted = "better" in verdicts
        wanted = "better on at least one of the metrics"
    outcome = "it is" if promoted else "it is not"
    return decision(
        promoted,
        f"rule '{rule.rule}' wants {wanted} than version {current}; {outcome}",
        comparison,
    )


def _move_champion(client: MlflowClient, name: str, version: str, *, by: str, why: str) -> None:
    previous = _alias_version(client, name, CHAMPION)
    client.set_registered_model_alias(name, CHAMPION, version)
    for key, value in {
        "clvlab.promoted_by": by,
        "clvlab.promoted_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "clvlab.promotion_reason": why,
        "clvlab.previous_champion": previous or "",
    }.items():
        client.set_model_version_tag(name, version, key, value)


@contextmanager
def registry_lock(
    client: MlflowClient, name: str, *, timeout_s: float = 120.0, stale_s: float = 600.0
) -> Iterator[None]:
    """Hold the lock on ``name``'s aliases: one registration or promotion at a time decides
    and moves them, wherever it runs.

    The lock is a registered model ``<name>.clvlab-lock``: the store creates a name only once
    (a unique key in its database, on a tracking server too), so creating it is an atomic
    test-and-set. It is deleted on release; one older than ``stale_s`` seconds is left over by
    a crashed process and is taken over.

    Raises
    ------
    ClvlabError
        If the lock is still held after ``timeout_s`` seconds.
    """
    from mlflow.exceptions import MlflowException

    lock = f"{name}{LOCK_SUFFIX}"
    holder = f"{socket.gethostname()}:{os.getpid()}"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.create_registered_model(lock, tags={"clvlab.lock_holder": holder})
            break
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        try:
            held = client.get_registered_model(lock)
        except MlflowException:
            continue  # released in between: try again at once
        age_s = time.time() - held.creation_timestamp / 1000
        if age_s > stale_s:
            _delete_lock(client, lock)
            continue
        if time.monotonic() > deadline:
            raise ClvlabError(
                f"the aliases of registered model {name!r} are locked by "
                f"{(held.tags or {}).get('clvlab.lock_holder', 'another process')} since "
                f"{age_s:.0f} s ago; if no `clvlab train --register {name}` or `clvlab promote` "
                f"is running, delete the registered model {lock!r}"
            )
        time.sleep(random.uniform(0.05, 0.25))
    try:
        yield
    finally:
        _delete_lock(client, lock)


def _delete_lock(client: MlflowClient, lock: str) -> None:
    from mlflow.exceptions import MlflowException

    with contextlib.suppress(MlflowException):
        client.delete_registered_model(lock)


def _alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    import mlflow

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except mlflow.exceptions.MlflowException:
        return None
