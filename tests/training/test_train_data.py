"""Data loading: clean identifiers, and every data problem refused by name (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers_training import DATA_DIR, train_direct, write_config

from training.config import IrisSource
from training.data import load_csv_dataset, load_dataset, to_identifier
from training.errors import DataError

GOOD_ROWS = "".join(f"{i},{i * 2},{'a' if i % 2 else 'b'}\n" for i in range(12))


def test_iris_columns_are_snake_case_floats() -> None:
    dataset = load_dataset(IrisSource())
    assert list(dataset.features.columns) == [
        "sepal_length_cm",
        "sepal_width_cm",
        "petal_length_cm",
        "petal_width_cm",
    ]
    assert (dataset.features.dtypes == "float64").all()
    assert sorted(dataset.target.unique()) == [0, 1, 2]
    assert len(dataset.data_hash) == 64
    assert load_dataset(IrisSource()).data_hash == dataset.data_hash


def test_csv_columns_become_identifiers_and_hash_is_the_files() -> None:
    import hashlib

    path = DATA_DIR / "train_small.csv"
    dataset = load_csv_dataset(path, "label")
    assert list(dataset.features.columns) == ["feature_a", "feature_b", "c"]
    assert set(dataset.target) == {"cat", "dog"}
    assert dataset.data_hash == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("name", "expected"),
    [("sepal length (cm)", "sepal_length_cm"), ("Feature A", "feature_a"), ("2x", "f_2x")],
)
def test_to_identifier(name: str, expected: str) -> None:
    assert to_identifier(name) == expected


@pytest.mark.parametrize(
    ("content", "target", "expected"),
    [
        ("", "y", "data file is empty"),
        ("   \n\n", "y", "data file is empty"),
        ("x1,x2,y\n", "y", "has a header but no rows"),
        ("x1,x2,y\n" + GOOD_ROWS, "label", "target column 'label' not found; columns are: x1"),
        (
            "x1,colour,y\n" + "".join(f"{i},red,{i % 2}\n" for i in range(12)),
            "y",
            "non-numeric feature column(s) colour",
        ),
        ("x1,x2,y\n" + GOOD_ROWS.replace("3,6,", "3,,", 1), "y", "missing values in feature"),
        ("x1,x2,y\n" + GOOD_ROWS.replace("3,6,a", "3,6,", 1), "y", "1 row(s) have no target"),
        ("x1,x2,y\n1,2,a\n2,3,b\n3,4,a\n", "y", "too few rows (3); need at least 10"),
        ("x1,x2,y\n" + "".join(f"{i},{i},a\n" for i in range(12)), "y", "target has 1 class"),
        (
            "x1,x2,y\n" + "".join(f"{i},{i},a\n" for i in range(11)) + "11,11,b\n",
            "y",
            "too few rows for class(es) 'b' (1)",
        ),
        ("x 1,X-1,y\n" + GOOD_ROWS, "y", "both become 'x_1'"),
        ("y\n" + "".join(f"{i % 2}\n" for i in range(12)), "y", "no feature columns"),
    ],
)
def test_csv_problems_are_named(tmp_path: Path, content: str, target: str, expected: str) -> None:
    path = tmp_path / "data.csv"
    path.write_text(content)
    with pytest.raises(DataError) as caught:
        load_csv_dataset(path, target)
    assert expected in str(caught.value)
    assert str(path) in str(caught.value)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data file not found"):
        load_csv_dataset(tmp_path / "absent.csv", "y")


def test_tiny_holdout_is_refused_before_fitting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    csv = tmp_path / "data.csv"
    csv.write_text("x1,x2,y\n" + "".join(f"{i},{i},{i % 3}\n" for i in range(12)))
    config = write_config(
        tmp_path, test_size=0.1, data={"kind": "csv", "path": str(csv), "target": "y"}
    )
    code, out, err = train_direct(capsys, config)
    assert (code, out) == (2, "")
    assert "each side needs at least 3" in err


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "data file not found"),
        ("", "data file is empty"),
        ("a,b\n1,2\n", "target column 'y' not found"),
        ("a,b,y\n" + "".join(f"{i},x{i},{i % 2}\n" for i in range(12)), "non-numeric"),
    ],
)
def test_data_errors_exit_2_with_a_message_not_a_traceback(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    content: str | None,
    expected: str,
) -> None:
    # Data errors come before any MLflow call, so an unreachable URI proves that too.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    csv = tmp_path / "data.csv"
    if content is not None:
        csv.write_text(content)
    config = write_config(tmp_path, data={"kind": "csv", "path": "data.csv", "target": "y"})
    code, out, err = train_direct(capsys, config)
    assert (code, out) == (2, "")
    assert err.startswith("error: ")
    assert expected in err
    assert "Traceback" not in err
