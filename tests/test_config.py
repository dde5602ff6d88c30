import datetime as dt
from pathlib import Path

import pytest

from clvlab import ConfigError, load_config
from clvlab.config import resolution

ROOT = Path(__file__).resolve().parents[1]
GOOD = {
    "name": "demo",
    "data": {"source": "x.csv", "customer_id": "cid", "date": "day"},
    "split": {"calibration_end": "2020-06-30", "holdout_end": "2020-12-31"},
}


def test_default_config_is_valid_and_complete():
    config = load_config(ROOT / "configs" / "cdnow.yaml")
    assert config.name == "cdnow"
    assert config.data.source == "lifetimes:CDNOW_master"
    assert config.data.amount == "amount"
    assert config.split.calibration_end == dt.date(1997, 9, 30)
    assert config.split.holdout_end == dt.date(1998, 6, 30)
    assert config.time_unit == "W" and config.unit_days == 7
    assert config.scoring.horizon_days == 365
    assert config.scoring.annual_discount_rate == pytest.approx(0.10)


def test_defaults_fill_optional_sections():
    config = load_config(GOOD)
    assert config.data.amount is None  # count-only
    assert config.time_unit == "W"
    assert config.experiment_name == "demo"
    assert config.to_flat_dict()["split.holdout_end"] == "2020-12-31"


def test_unknown_key_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: x\ndata: {source: a.csv, custmer_id: id}\n"
        "split: {calibration_end: 2020-01-01, holdout_end: 2020-06-01}\n"
    )
    with pytest.raises(ConfigError, match=r"data\.custmer_id: unknown key") as info:
        load_config(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"time_unit": "Y"}, r"time_unit: Input should be 'D', 'W', 'M' or 'H'"),
        (
            {"split": {"calibration_end": "2020-13-01", "holdout_end": "2021-01-01"}},
            r"split\.calibration_end",
        ),
        (
            {"split": {"calibration_end": "2021-01-01", "holdout_end": "2020-01-01"}},
            r"holdout_end \(2020-01-01\) must be after calibration_end",
        ),
        ({"scoring": {"annual_discount_rate": -0.1}}, r"scoring\.annual_discount_rate"),
        (
            {"scoring": {"horizon_days": 36_526}},
            r"scoring\.horizon_days: Input should be less than or equal to 36525",
        ),
        ({"name": "has space"}, r"name: String should match pattern"),
        # Metric names are checked against the metric registry (clvlab.evaluation.metrics).
        (
            {"selection": {"churn": "churn_auc"}},
            r"selection\.churn: Input should be 'purchases_mae', .* or "
            r"'revenue_top_decile_capture' \(got 'churn_auc'\)",
        ),
        ({"registry": {"metrics": ["purchases_spearman"]}}, r"registry\.metrics\.0: Input"),
        # ... and each must judge the target it chooses for.
        (
            {"selection": {"purchases": "churn_roc_auc"}},
            r"selection: Value error, purchases: 'churn_roc_auc' judges another target",
        ),
    ],
)
def test_wrong_values_are_named(change, message):
    with pytest.raises(ConfigError, match=message):
        load_config({**GOOD, **change})


def test_missing_key_and_missing_file():
    with pytest.raises(ConfigError, match=r"split: required key is missing"):
        load_config({"name": "x", "data": {"source": "a.csv"}})
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("no/such/config.yaml")


def test_each_time_unit_has_one_resolution():
    """Days, weeks and months are summarized per day and scaled; hours per hour."""
    assert [resolution(unit) for unit in ("D", "W", "M", "H")] == [
        ("D", 1.0),
        ("D", 7.0),
        ("D", 30.436875),
        ("H", 1.0),
    ]
    hourly = load_config({**GOOD, "time_unit": "H"})
    assert hourly.time_unit == "H" and hourly.unit_days == 1 / 24
    with pytest.raises(ConfigError, match=r"time_unit must be one of D, W, M, H .* not 'Y'"):
        resolution("Y")


def test_spark_refuses_an_hourly_time_unit():
    with pytest.raises(ConfigError, match="engine: spark counts purchases per day") as info:
        load_config({**GOOD, "time_unit": "H", "engine": "spark"})
    assert "engine: local" in str(info.value)
    assert load_config({**GOOD, "time_unit": "D", "engine": "spark"}).engine == "spark"
