"""Atomic outputs and table provenance."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from etem.errors import InputError
from etem.io import atomic_path, read_table, read_table_metadata, write_table


def test_interrupted_write_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out.h5"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half a file")
        raise RuntimeError("killed")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_interrupted_write_keeps_previous_version(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("complete v1")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("partial v2")
        raise KeyboardInterrupt
    assert target.read_text() == "complete v1"


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_table_roundtrip_with_provenance(tmp_path: Path, suffix: str) -> None:
    df = pd.DataFrame({"image_id": ["a", "b"], "thickness_nm": [2.0, 3.5]})
    path = tmp_path / f"t{suffix}"
    write_table(path, df, metadata={"config_hash": "abc", "seed": 3})
    pd.testing.assert_frame_equal(read_table(path), df)
    assert read_table_metadata(path) == {"config_hash": "abc", "seed": 3}


def test_missing_table_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_table(tmp_path / "missing.csv")
