"""MLflow tracking: runs, tags, campaign grouping, lineage, concurrent writers."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from pathlib import Path

import mlflow
import pytest
import yaml

from etem.config import load_config, stage_hash, stage_yaml
from etem.runs import StageRun, campaign_key, search_stage_runs, tracking_uri


def _cfg(tmp_path: Path, **extra: object):
    return load_config({"name": "trk", "seed": 5, "results_dir": str(tmp_path / "res"), **extra})


def test_stage_runs_are_tagged_grouped_and_linked(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    with StageRun(cfg, "structures", params={"n": 3}, tags={"etem.snakemake.rule": "x"}) as run:
        run.log_metrics({"build_s": 1.5})
        first = run.run_id
    with StageRun(cfg, "simulation") as run:
        run.log_metrics({"images": 10}, step=1)
        second = run.run_id

    runs = search_stage_runs(cfg)
    assert set(runs["run_id"]) == {first, second}
    sim = runs[runs["run_id"] == second].iloc[0]
    assert sim["tags.etem.stage"] == "simulation"
    assert sim["tags.etem.config_hash"] == cfg.hash()
    assert sim["tags.etem.seed"] == "5"
    assert sim["tags.etem.git_commit"]
    assert sim["tags.etem.pkg.numpy"]
    assert sim["tags.etem.upstream_run_ids"] == first  # lineage: simulation <- structures
    assert sim["metrics.images"] == 10
    struct = runs[runs["run_id"] == first].iloc[0]
    assert struct["params.n"] == "3" and struct["params.seed"] == "5"
    assert struct["tags.etem.snakemake.rule"] == "x"
    # both are children of one campaign run
    assert sim["tags.mlflow.parentRunId"] == struct["tags.mlflow.parentRunId"]
    parent = mlflow.get_run(sim["tags.mlflow.parentRunId"])
    assert parent.data.tags["etem.role"] == "campaign"
    # the default store is sqlite under the results folder, with the config as artifact
    assert tracking_uri(cfg) == f"sqlite:///{(tmp_path / 'res' / 'mlflow.db').resolve()}"
    arts = [a.path for a in mlflow.MlflowClient().list_artifacts(first)]
    assert "config.yaml" in arts


def test_per_stage_configs_share_one_campaign_run_and_lineage(tmp_path: Path) -> None:
    """Each stage runs on its own config file (etem.config.stages): different hashes, one
    campaign run, lineage kept; a changed apply setting joins the same tree."""
    cfg = _cfg(tmp_path)
    structures = load_config(yaml.safe_load(stage_yaml(cfg, "structures")))
    simulation = load_config(yaml.safe_load(stage_yaml(cfg, "simulation")))
    assert structures.hash() != simulation.hash() != cfg.hash()
    assert structures.hash() == stage_hash(cfg, "structures")
    assert campaign_key(structures) == campaign_key(simulation) == campaign_key(cfg)
    with StageRun(structures, "structures") as run:
        first = run.run_id
    changed = load_config(yaml.safe_load(stage_yaml(
        _cfg(tmp_path, apply={"events": {"false_alarm_rate": 0.02}}), "simulation")))
    assert changed.hash() == simulation.hash()  # apply is not a simulation section
    with StageRun(simulation, "simulation") as run:
        second = run.run_id
    runs = search_stage_runs(cfg).set_index("run_id")
    assert runs.loc[second, "tags.etem.upstream_run_ids"] == first
    assert runs.loc[second, "tags.etem.config_hash"] == simulation.hash()
    assert (runs.loc[first, "tags.mlflow.parentRunId"]
            == runs.loc[second, "tags.mlflow.parentRunId"])
    other = load_config({"name": "trk", "seed": 6, "results_dir": str(tmp_path / "res")})
    assert campaign_key(other) != campaign_key(cfg)


def test_failed_stage_is_marked_failed(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    with pytest.raises(ValueError), StageRun(cfg, "structures"):
        raise ValueError("boom")
    runs = search_stage_runs(cfg, "structures")
    assert list(runs["status"]) == ["FAILED"]


def test_disabled_tracking_records_nothing(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, tracking={"enabled": False})
    with StageRun(cfg, "structures") as run:
        run.log_metrics({"a": 1})
        assert run.run_id is None
    assert not (tmp_path / "res" / "mlflow.db").exists()


def _worker(args: tuple[str, int]) -> str:
    res, i = args
    cfg = load_config({"name": "trk", "seed": 5, "results_dir": res})
    with StageRun(cfg, "simulation", params={"shard": i}) as run:
        for step in range(30):
            run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
        return run.run_id


def test_concurrent_jobs_do_not_collide(tmp_path: Path) -> None:
    res = str(tmp_path / "res")
    ctx = mp.get_context("spawn")
    with ctx.Pool(3) as pool:
        ids = pool.map(_worker, [(res, i) for i in range(3)])
    assert len(set(ids)) == 3
    runs = search_stage_runs(_cfg(tmp_path), "simulation")
    assert set(runs["run_id"]) == set(ids)
    assert (runs["status"] == "FINISHED").all()
    # exactly one campaign parent despite concurrent creation
    assert runs["tags.mlflow.parentRunId"].nunique() == 1


def _killed_stage_run(cfg_dict: dict[str, object], tags: dict[str, str]) -> None:
    """A stage job killed with SIGKILL while its run is open (the run stays RUNNING)."""
    cfg = load_config(cfg_dict)
    run = StageRun(cfg, "simulation", tags=tags)
    run.__enter__()
    os.kill(os.getpid(), signal.SIGKILL)


def test_runs_of_killed_jobs_are_marked_killed_by_the_next_run(tmp_path: Path) -> None:
    raw = {"name": "trk", "seed": 5, "results_dir": str(tmp_path / "res")}
    cfg = load_config(raw)
    job = {"etem.snakemake.rule": "simulate_images", "etem.snakemake.wildcards": "shard=000"}
    ctx = mp.get_context("spawn")
    for tags in ({}, job):
        proc = ctx.Process(target=_killed_stage_run, args=(raw, tags))
        proc.start()
        proc.join(120)
        assert proc.exitcode == -signal.SIGKILL
    # the second job's start already found the first one's run orphaned (same host, pid gone)
    assert sorted(search_stage_runs(cfg, "simulation")["status"]) == ["KILLED", "RUNNING"]
    # a run on another node whose job key differs is left alone (it may still run there)
    client = mlflow.MlflowClient(tracking_uri(cfg))
    exp = client.get_experiment_by_name("trk").experiment_id
    remote = client.create_run(exp, tags={"etem.host": "othernode", "etem.pid": "1",
                                          "etem.role": "stage", "etem.stage": "simulation"})
    with StageRun(cfg, "simulation", tags=job) as run:
        assert len(run.killed) == 1
    status = search_stage_runs(cfg, "simulation").set_index("run_id")["status"]
    assert status[remote.info.run_id] == "RUNNING"
    assert sorted(status.drop(remote.info.run_id)) == ["FINISHED", "KILLED", "KILLED"]


def test_a_live_run_of_the_same_job_key_is_not_killed(tmp_path: Path) -> None:
    from etem.io import host_tag

    cfg = _cfg(tmp_path)
    job = {"etem.snakemake.rule": "simulate_images"}
    with StageRun(cfg, "simulation", tags=job) as first:  # still running (this process)
        client = mlflow.MlflowClient(tracking_uri(cfg))
        assert client.get_run(first.run_id).data.tags["etem.host"] == host_tag()
        with StageRun(cfg, "simulation", tags=job) as second:
            assert second.killed == []
    assert set(search_stage_runs(cfg, "simulation")["status"]) == {"FINISHED"}
