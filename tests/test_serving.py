"""`clvlab serve` (`mlflow models serve -m models:/NAME@champion`) answers a JSON payload of
customers' transactions with their scores.

One model is trained on the CDNOW sample (a few seconds), registered as ``srv`` (its first
version becomes the champion) and served once for the module by ``clvlab serve srv``, which
runs the venv's ``mlflow models serve --env-manager local``, on a free local port. Every wait
is bounded (server start-up, each request), and the server's process group is always stopped.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

import clvlab
import servers
from clvlab.scoring import NO_HISTORY, SCORE_COLUMNS
from clvlab.tracking import serving

# The installed console script, as a user runs it.
CLVLAB = [str(Path(sys.executable).with_name("clvlab"))]
CONFIG = {
    "name": "srv",
    "data": {"source": "lifetimes:CDNOW_sample", "amount": "amount"},
    "split": {"calibration_end": "1997-09-30", "holdout_end": "1998-06-30"},
    "models": {"purchases": "bgnbd"},
}
AS_OF, HORIZON_DAYS = "1998-06-30", 365
PARAMS = {"as_of": AS_OF, "horizon_days": HORIZON_DAYS}
COLUMNS = ["customer_id", "date", "amount"]
REQUEST_TIMEOUT_S = 30
TEXT_COLUMNS = ["customer_id", "model", "model_version", "reason"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[object, Path, Path]]:
    """A model trained in a private folder and store and registered as ``srv`` (its first
    version, so the champion): (TrainResult, model folder, workdir)."""
    workdir = tmp_path_factory.mktemp("serving")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir / 'mlflow.db'}")
        result = clvlab.train(CONFIG, register="srv")
        model_folder = Path(result.local_path).resolve()
    assert result.registry.promoted
    assert (model_folder / "MLmodel").is_file()
    yield result, model_folder, workdir


@pytest.fixture(scope="module")
def server(trained) -> Iterator[str]:
    """The base URL of ``clvlab serve srv``: ``mlflow models serve -m models:/srv@champion
    --env-manager local`` on a free port."""
    _, _, workdir = trained
    port = servers.free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}"}
    with servers.running(
        [*CLVLAB, "serve", "srv", "--port", str(port)],
        url=f"http://127.0.0.1:{port}",
        health="/ping",
        cwd=workdir,
        env=env,
    ) as url:
        yield url


def test_serve_runs_mlflow_on_the_registered_champion(trained, monkeypatch):
    _, model_folder, workdir = trained
    command = serving.serve_command("srv", port=5123)
    assert Path(command[0]).name == "mlflow"
    assert command[1:] == [
        "models",
        "serve",
        "-m",
        "models:/srv@champion",
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        "5123",
    ]
    assert serving.model_uri(str(model_folder)) == str(model_folder)
    assert serving.model_uri("runs:/abc/model") == "runs:/abc/model"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir / 'mlflow.db'}")
    serving.check_registered("srv")  # the champion exists
    with pytest.raises(clvlab.ClvlabError, match="no version of registered model 'srv' has the"):
        serving.check_registered("srv", alias="retired")


def _post(url: str, payload: dict) -> requests.Response:
    return requests.post(f"{url}/invocations", json=payload, timeout=REQUEST_TIMEOUT_S)


def _payload(transactions: pd.DataFrame, params: dict | None = None) -> dict:
    """``dataframe_split`` JSON for transactions: dates as ISO strings."""
    data = [
        [customer, date.isoformat(), amount]
        for customer, date, amount in transactions[COLUMNS].itertuples(index=False)
    ]
    return {
        "dataframe_split": {"columns": COLUMNS, "data": data},
        "params": PARAMS if params is None else params,
    }


def _assert_scores_equal(predictions: list[dict], expected: pd.DataFrame) -> None:
    """The answer's records against a score table, column by column (JSON types: strings,
    numbers, NaN or null for a missing prediction, null for no reason)."""
    assert all(list(row) == SCORE_COLUMNS for row in predictions)
    assert len(predictions) == len(expected)
    for column in SCORE_COLUMNS:
        values = [row[column] for row in predictions]
        if column in TEXT_COLUMNS:
            want = [None if pd.isna(v) else str(v) for v in expected[column]]
            assert values == want, column
        else:
            np.testing.assert_allclose(
                np.asarray([math.nan if v is None else v for v in values], dtype=float),
                expected[column].to_numpy(dtype=float, na_value=np.nan),
                rtol=1e-9,
                equal_nan=True,
                err_msg=column,
            )


@pytest.fixture(scope="module")
def transactions(cdnow_sample: pd.DataFrame) -> pd.DataFrame:
    return cdnow_sample[COLUMNS]


def test_one_customer(server, trained, transactions):
    result, _, _ = trained
    one = transactions[transactions["customer_id"] == "1"].reset_index(drop=True)
    assert len(one) > 1
    response = _post(server, _payload(one))
    assert response.status_code == 200, response.text
    expected = clvlab.score(result.model, one, as_of=AS_OF, horizon_days=HORIZON_DAYS)
    _assert_scores_equal(response.json()["predictions"], expected)
    assert response.json()["predictions"][0]["reason"] is None


def test_several_customers(server, trained, transactions):
    result, _, _ = trained
    counts = transactions.groupby("customer_id").size()
    chosen = [
        *counts[counts == 1].index[:2],  # a single purchase: frequency 0
        *counts[counts.between(3, 10)].index[:5],
        counts.idxmax(),
    ]
    several = transactions[transactions["customer_id"].isin(chosen)]
    # A customer whose only purchase is after as_of keeps a row, with NaN scores and a reason.
    late = pd.DataFrame(
        {"customer_id": ["late"], "date": [pd.Timestamp("1998-07-15")], "amount": [10.0]}
    ).astype(several.dtypes.to_dict())
    several = pd.concat([several, late], ignore_index=True)
    response = _post(server, _payload(several))
    assert response.status_code == 200, response.text
    expected = clvlab.score(result.model, several, as_of=AS_OF, horizon_days=HORIZON_DAYS)
    assert len(expected) == len(chosen) + 1
    predictions = response.json()["predictions"]
    _assert_scores_equal(predictions, expected)
    assert {row["customer_id"]: row["reason"] for row in predictions}["late"] == NO_HISTORY


def test_params_default_to_last_transaction_and_model_horizon(server, trained, transactions):
    result, _, _ = trained
    one = transactions[transactions["customer_id"] == "1"].reset_index(drop=True)
    response = _post(server, _payload(one, params={}))
    assert response.status_code == 200, response.text
    _assert_scores_equal(response.json()["predictions"], clvlab.score(result.model, one))


def _error(response: requests.Response) -> str:
    assert response.status_code == 400, (response.status_code, response.text)
    body = response.json()
    # An error of the request's own, not "an unexpected error" with the cause in a stack trace.
    assert "unexpected error" not in body["message"]
    return body["message"]


def test_missing_date_column_is_a_400_naming_it(server, transactions):
    one = transactions[transactions["customer_id"] == "1"]
    payload = {
        "dataframe_split": {
            "columns": ["customer_id", "amount"],
            "data": one[["customer_id", "amount"]].values.tolist(),
        },
        "params": PARAMS,
    }
    message = _error(_post(server, payload))
    assert "missing inputs ['date']" in message


@pytest.mark.parametrize("bad_date", ["1998-13-45", "not a date"])
def test_bad_date_is_a_400_naming_column_and_value(server, bad_date):
    payload = {
        "dataframe_split": {
            "columns": COLUMNS,
            "data": [["1", "1997-01-01", 29.33], ["1", bad_date, 10.0]],
        },
        "params": PARAMS,
    }
    message = _error(_post(server, payload))
    assert "column date" in message and bad_date in message


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"as_of": "1998-13-45"}, "as_of '1998-13-45' is not a date: give it as YYYY-MM-DD"),
        ({"as_of": AS_OF, "horizon_days": -5}, "horizon_days must be a positive number"),
        ({"as_of": AS_OF, "horizon_days": 0}, "horizon_days must be a positive number"),
    ],
)
def test_bad_params_are_a_400_with_clvlabs_message(server, params, expected):
    payload = {
        "dataframe_split": {"columns": COLUMNS, "data": [["1", "1997-01-01", 29.33]]},
        "params": params,
    }
    response = _post(server, payload)
    assert expected in _error(response)
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([], "no transactions (the table has no rows)"),
        ([[None, "1997-01-01", 29.33]], "no transactions with a customer id to score"),
    ],
)
def test_data_clvlab_rejects_is_a_400_with_its_message(server, data, expected):
    payload = {"dataframe_split": {"columns": COLUMNS, "data": data}, "params": PARAMS}
    assert expected in _error(_post(server, payload))


def test_server_still_answers_after_errors(server, trained, transactions):
    result, _, _ = trained
    one = transactions[transactions["customer_id"] == "2"].reset_index(drop=True)
    response = _post(server, _payload(one))
    assert response.status_code == 200, response.text
    expected = clvlab.score(result.model, one, as_of=AS_OF, horizon_days=HORIZON_DAYS)
    _assert_scores_equal(response.json()["predictions"], expected)
