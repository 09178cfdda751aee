"""Atomic outputs and table provenance."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from etem.errors import InputError
from etem.io import (
    TMP_MARK,
    atomic_path,
    host_tag,
    read_table,
    read_table_metadata,
    stale_temporaries,
    write_table,
)


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
    if suffix == ".csv":  # plain CSV: what spreadsheets and a bare pandas.read_csv open
        assert path.read_text().splitlines()[0] == "image_id,thickness_nm"
        pd.testing.assert_frame_equal(pd.read_csv(path), df)


def test_killed_writers_temporaries_are_removed_by_the_next_writer(tmp_path: Path) -> None:
    target = tmp_path / "shard_001.h5"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid = int(dead.stdout)  # a process that has exited: its temporaries are stale
    stale = tmp_path / f".shard_001.h5{TMP_MARK}{host_tag()}-{pid}-abc.h5"
    stale.write_bytes(b"partial")
    other_host = tmp_path / f".shard_001.h5{TMP_MARK}othernode-{pid}-abc.h5"
    other_host.write_bytes(b"maybe still written on another node")
    assert stale_temporaries(tmp_path) == [stale]
    with atomic_path(target) as tmp:
        assert stale_temporaries(tmp_path) == []  # ours is alive, the dead one is gone
        tmp.write_bytes(b"complete")
    assert not stale.exists() and other_host.exists()
    assert target.read_bytes() == b"complete"


def test_missing_table_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_table(tmp_path / "missing.csv")
