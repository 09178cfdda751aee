"""The Python API example of docs/movies.md runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from etem.models.factory import build_model
from etem.models.io import save_model
from etem.testing import lattice_movie, write_h5

DOC = Path(__file__).resolve().parents[2] / "docs" / "movies.md"


def test_python_api_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    text = DOC.read_text()
    section = text[text.index("## Python API"):]
    code = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert code is not None
    monkeypatch.chdir(tmp_path)
    write_h5(lattice_movie(n_frames=8, size_px=48, event_frame=None, seed=2), "movie.h5")
    arch = dict(kind="denoiser", depth=2, base_channels=4)
    torch.manual_seed(0)
    save_model(Path("models/denoiser.pt"), build_model(arch),
               {"kind": "denoiser", "arch": arch, "pixel_size_A": 0.2})
    exec(compile(code.group(1), str(DOC), "exec"), {})
    printed = capsys.readouterr().out
    assert printed.startswith("8 frames,")
    assert (tmp_path / "out" / "summary.json").exists()
    assert "'results'" in printed and "'events'" in printed
