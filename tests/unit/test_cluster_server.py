"""Unit tests of etem.cluster: the tracking-server command, GPU requests, retrain run ids."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from etem.cli import main
from etem.cluster.resources import gather_mem_mb, gather_runtime_min, gpus, retrain_run_ids
from etem.cluster.server import ServerSpec
from etem.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def _spec(**kw: object) -> ServerSpec:
    base = {"backend_uri": "sqlite:////tmp/x.db", "artifact_root": Path("/tmp/art")}
    return ServerSpec(**{**base, **kw})  # type: ignore[arg-type]


def test_command_serves_artifacts_from_root_on_loopback() -> None:
    spec = _spec(port=5123)
    cmd = spec.command()
    assert cmd[1] == "server"
    assert cmd[cmd.index("--backend-store-uri") + 1] == "sqlite:////tmp/x.db"
    assert cmd[cmd.index("--artifacts-destination") + 1] == "file:///tmp/art"
    assert cmd[cmd.index("--port") + 1] == "5123"
    assert "--allowed-hosts" not in cmd
    assert spec.tracking_uri == "http://127.0.0.1:5123"


def test_command_shared_root_and_all_interfaces() -> None:
    spec = _spec(host="0.0.0.0", serve_artifacts=False)
    cmd = spec.command()
    assert "--no-serve-artifacts" in cmd
    assert cmd[cmd.index("--default-artifact-root") + 1] == "file:///tmp/art"
    hosts = cmd[cmd.index("--allowed-hosts") + 1].split(",")
    assert spec.advertised_host in hosts and f"{spec.advertised_host}:5000" in hosts
    assert spec.advertised_host not in ("0.0.0.0", "localhost")


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"backend_uri": "file:///tmp/mlruns"}, "expected a database URI"),
        ({"port": 0}, "--port 0"),
        ({"workers": 0}, "--workers 0"),
    ],
)
def test_bad_settings_are_config_errors(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _spec(**kw).validate()


def test_postgres_backend_needs_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_psycopg2(name: str, *args: object, **kw: object) -> object:
        if name == "psycopg2":
            raise ImportError(name)
        return real_import(name, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_psycopg2)
    with pytest.raises(ConfigError, match="pip install psycopg2-binary"):
        _spec(backend_uri="postgresql://u@h/db").validate()


def test_cli_prints_uri_and_command(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    rc = main(["tracking-server", "--backend-uri", f"sqlite:///{db}", "--port", "5077",
               "--artifact-root", str(tmp_path / "a"), "--print-command"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0
    assert out[0] == "export MLFLOW_TRACKING_URI=http://127.0.0.1:5077"
    words = out[1].split()
    assert Path(words[0]).name == "mlflow" and words[1] == "server"
    assert f"--backend-store-uri sqlite:///{db}" in out[1]
    assert not (tmp_path / "a").exists()  # --print-command starts nothing


def test_cli_without_backend_is_one_line_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ETEM_TRACKING_BACKEND_URI", raising=False)
    rc = main(["tracking-server", "--print-command"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0
    assert err == ["etem: error: --backend-uri is required (or set ETEM_TRACKING_BACKEND_URI)"]


def test_gpus_follow_device() -> None:
    assert gpus(SimpleNamespace(device="cuda")) == 1
    assert gpus(SimpleNamespace(device="cpu")) == 0
    assert gpus(SimpleNamespace(device="auto")) == 0


def test_retrain_run_ids() -> None:
    assert retrain_run_ids(" a1, b2 ,") == ["a1", "b2"]
    with pytest.raises(ConfigError, match="ETEM_RETRAIN_RUN_IDS"):
        retrain_run_ids("")


def test_slurm_profile_parses_and_keeps_squeue_semantics() -> None:
    """The profile is valid for Snakemake's profile parser and keeps the settings the test
    cluster needs: squeue status command, MinJobAge rule, attempt-scaled resources."""
    from snakemake.profiles import ProfileConfigFileParser

    path = REPO / "profiles" / "slurm" / "config.yaml"
    raw = yaml.safe_load(path.read_text())
    with open(path) as fh:
        parsed = ProfileConfigFileParser().parse(fh)
    assert parsed["executor"] == "slurm"
    assert parsed["slurm-status-command"] == "squeue"
    # MinJobAge of slurm_cluster.sh (300 s) >= 3 x init seconds
    assert 3 * int(parsed["slurm-init-seconds-before-status-checks"]) <= 300
    for rule, res in raw["set-resources"].items():
        for key in ("mem_mb", "runtime"):
            value = str(res[key])
            assert "attempt" in value, (rule, key, value)
            assert eval(value, {"attempt": 2}) == 2 * eval(value, {"attempt": 1})
    assert "simulation" in parsed["group-components"][0]
    assert parsed["set-resource-scopes"] == ["sim_slots=local"]


def test_gather_resources_grow_with_the_movie() -> None:
    """The gather goes through every frame on one core: a long movie asks for more time and
    (per-frame statistics) a little more memory; a short one the floor."""
    assert gather_runtime_min(16, 256 * 256) == 60
    assert gather_runtime_min(None, None) == 60
    # 20,000 frames of 1024²: ~0.65 s/frame measured, x2 margin -> over 6 h
    long = gather_runtime_min(20_000, 1024 * 1024)
    assert 360 < long < 600
    assert gather_runtime_min(20_000, 256 * 256) < long  # smaller frames, faster
    assert gather_runtime_min(40_000, 1024 * 1024) >= 2 * long - 1
    assert gather_mem_mb(0) == 4000
    assert 4000 < gather_mem_mb(20_000) < 5000
