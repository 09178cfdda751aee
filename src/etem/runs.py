"""MLflow tracking: one run per stage invocation, grouped by campaign, with lineage.

Layout in the tracking store
----------------------------
* one **experiment** per campaign (``config.tracking.experiment`` or the campaign name);
* one **campaign run** per campaign key (:func:`campaign_key`: name, seed, results folder),
  tag ``etem.role=campaign``: the parent of every stage run, so the MLflow UI shows the
  campaign as a tree (each stage records the hash of its own per-stage config in
  ``etem.config_hash``, so a stage re-run after an apply setting changed joins the same tree);
* one **stage run** per CLI invocation, tags ``etem.stage``, ``etem.campaign``,
  ``etem.config_hash``, ``etem.campaign_key``, ``etem.git_commit``, ``etem.version``, ``etem.seed``,
  ``etem.pkg.<name>`` (package versions), ``etem.snakemake.rule`` / ``etem.snakemake.wildcards``
  when run by Snakemake, and ``etem.upstream_run_ids``: the finished runs of the stages it
  consumed (structures → simulation → training → evaluation/apply → report).

The default store is ``sqlite:///<results_dir>/mlflow.db`` with artifacts in
``<results_dir>/mlartifacts``; ``MLFLOW_TRACKING_URI`` overrides it (e.g. an ``mlflow server``
with PostgreSQL for multi-node runs). For sqlite, every write holds an advisory file lock so
concurrent local jobs do not collide; metrics are buffered and written in batches.

Model registry
--------------
Each training run also registers its model file in MLflow's model registry
(:meth:`StageRun.register_model`): an MLflow 3 *logged model* (name = the network kind, source
run = the training run) holding the etem model file byte for byte, registered as a new version
of ``<campaign name>-<kind>`` (e.g. ``demo-denoiser``). :func:`model_file` turns
``models:/NAME/VERSION`` (or ``models:/NAME/latest``) back into a local copy of that file, so
every ``--denoiser/--unsupervised/--segmenter/--init-from`` accepts a registry URI beside a
path and gives the same results.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from etem import __version__
from etem.config import EtemConfig
from etem.errors import InputError
from etem.io import file_digest, host_tag, pid_alive
from etem.provenance import config_hash, git_commit, package_versions

log = logging.getLogger("etem.runs")

#: Which stages a stage consumes (for the ``etem.upstream_run_ids`` tag).
UPSTREAM: dict[str, tuple[str, ...]] = {
    "structures": (),
    "simulation": ("structures",),
    "simulate-movie": ("structures",),
    "simulate-code-path": ("structures",),
    "train-denoiser": ("simulation",),
    "train-segmenter": ("simulation",),
    "train-unsupervised": ("simulate-movie",),
    "evaluation": ("train-denoiser", "train-unsupervised", "train-segmenter", "simulation",
                   "simulate-code-path"),
    "apply": ("train-denoiser", "train-unsupervised", "train-segmenter", "simulate-movie"),
    "report": ("evaluation", "apply"),
}


def campaign_key(config: EtemConfig) -> str:
    """Identity of a campaign's runs: its name, seed and results folder (the per-stage
    config files of one campaign share it; see :mod:`etem.config.stages`)."""
    return config_hash(
        {"name": config.name, "seed": config.seed, "results": str(config.results_path)}
    )


def tracking_uri(config: EtemConfig, store_dir: Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the config's, else sqlite in ``store_dir``
    (default: the campaign's results folder)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    if config.tracking.uri:
        return str(config.tracking.uri)
    db = ((store_dir or config.results_path) / "mlflow.db").resolve()
    return f"sqlite:///{db}"


def experiment_name(config: EtemConfig) -> str:
    """MLflow experiment of the campaign."""
    return config.tracking.experiment or config.name


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts to dotted keys (lists become their string form)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """Exclusive advisory lock for sqlite stores (no-op for servers)."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    db = Path(uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class StageRun:
    """One stage invocation recorded as an MLflow run.

    Use as a context manager; the run ends FINISHED, or FAILED if the block raises. With
    ``config.tracking.enabled = False`` nothing is recorded and ``run_id`` is ``None``.
    """

    def __init__(
        self,
        config: EtemConfig,
        stage: str,
        params: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
        run_name: str | None = None,
        store_dir: Path | None = None,
    ) -> None:
        self.config = config
        self.stage = stage
        self.enabled = bool(config.tracking.enabled)
        self.uri = tracking_uri(config, store_dir)
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self._params = {"seed": config.seed, "config_hash": config.hash(), **(params or {})}
        self._tags = dict(tags or {})
        self._run_name = run_name or stage
        self._metrics: list[Any] = []
        self._last_flush = time.monotonic()
        self._client: Any = None
        self.killed: list[str] = []

    # -- context management -------------------------------------------------------------
    def __enter__(self) -> StageRun:
        if self.enabled:
            self._start()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if not self.enabled or self.run_id is None:
            return
        status = "FINISHED" if exc_type is None else "FAILED"
        self._call(self._end, status)

    # -- public API -----------------------------------------------------------------------
    def log_params(self, params: dict[str, Any]) -> None:
        """Log (flattened) parameters."""
        if self.enabled and self.run_id:
            self._call(self._log_params, flatten(params))

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Buffer metrics; they are written in batches (every 100 values or 10 s) and at end."""
        if not (self.enabled and self.run_id):
            return
        from mlflow.entities import Metric  # lazy: `etem --help` imports runs

        now = int(time.time() * 1000)
        for k, v in metrics.items():
            self._metrics.append(Metric(_clean_key(k), float(v), now, int(step or 0)))
        if len(self._metrics) >= 100 or time.monotonic() - self._last_flush > 10:
            self.flush()

    def set_tags(self, tags: dict[str, Any]) -> None:
        """Set tags on the run."""
        if self.enabled and self.run_id:
            self._call(self._set_tags, {k: str(v) for k, v in tags.items()})

    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        """Copy a file into the run's artifacts."""
        if self.enabled and self.run_id:
            self._call(
                lambda: self._client.log_artifact(self.run_id, str(path), artifact_path)
            )

    def log_figure(self, fig: Any, name: str) -> None:
        """Save a matplotlib figure as a PNG artifact."""
        if not (self.enabled and self.run_id):
            return
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / name
            fig.savefig(p, dpi=110, bbox_inches="tight")
            self.log_artifact(p, "figures")

    def log_text(self, text: str, name: str) -> None:
        """Save a text artifact."""
        if not (self.enabled and self.run_id):
            return
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / name
            p.write_text(text, encoding="utf-8")
            self.log_artifact(p)

    def register_model(self, path: str | os.PathLike[str], kind: str) -> str | None:
        """Register the model file ``path`` (a network of ``kind``) in the model registry as a
        new version of :func:`registered_name`; its ``models:/NAME/VERSION`` URI (also set as
        tag ``etem.registered_model``), or None when tracking is off."""
        if not (self.enabled and self.run_id):
            return None
        name = registered_name(self.config, kind)
        version = self._call(self._register, Path(path), name, kind)
        uri = f"{MODELS_SCHEME}{name}/{version}"
        self.set_tags({"etem.registered_model": uri})
        log.info("registered %s as %s", path, uri)
        return uri

    def flush(self) -> None:
        """Write buffered metrics."""
        if self.enabled and self.run_id and self._metrics:
            batch, self._metrics = self._metrics, []
            self._call(self._log_batch, batch)
        self._last_flush = time.monotonic()

    # -- internals ------------------------------------------------------------------------
    def _call(self, fn: Any, *args: Any) -> Any:
        """Run a store call under the sqlite lock, retrying transient 'locked' errors."""
        for attempt in range(8):
            try:
                with _store_lock(self.uri):
                    return fn(*args)
            except Exception as exc:
                if "locked" not in str(exc).lower() or attempt == 7:
                    raise
                time.sleep(0.2 * (attempt + 1))
        return None

    def _start(self) -> None:
        from mlflow.tracking import MlflowClient  # lazy: `etem --help` imports runs

        def create() -> None:
            # Building the client creates/migrates a sqlite store: do it under the lock too.
            self._client = MlflowClient(tracking_uri=self.uri)
            self._client.search_experiments(max_results=1)
            self._create()

        self._call(create)
        log.info("MLflow run %s (%s) in %s", self.run_id, self.stage, self.uri)

    def _create(self) -> None:
        client = self._client
        name = experiment_name(self.config)
        exp = client.get_experiment_by_name(name)
        if exp is None:
            from mlflow.exceptions import MlflowException  # lazy: `etem --help` imports runs

            location = None
            if self.uri.startswith("sqlite:///"):
                art = Path(self.uri.removeprefix("sqlite:///")).parent / "mlartifacts"
                location = art.resolve().as_uri()
            try:
                self.experiment_id = client.create_experiment(name, artifact_location=location)
            except MlflowException as exc:
                # another process (a parallel job on a tracking server) created it first
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                exp = client.get_experiment_by_name(name)
                if exp is None:
                    raise
                self.experiment_id = exp.experiment_id
        else:
            self.experiment_id = exp.experiment_id
        chash = self.config.hash()
        key = campaign_key(self.config)
        base_tags = {
            "etem.campaign": self.config.name,
            "etem.campaign_key": key,
            "etem.config_hash": chash,
            "etem.git_commit": git_commit(),
            "etem.version": _etem_version(),
            "etem.seed": str(self.config.seed),
            **{f"etem.pkg.{k}": v for k, v in package_versions().items()},
        }
        parent = self._campaign_run(key, base_tags)
        upstream = self._upstream_ids(key)
        tags = {
            **base_tags,
            "etem.stage": self.stage,
            "etem.role": "stage",
            "mlflow.parentRunId": parent,
            "etem.upstream_run_ids": ",".join(upstream),
            **{_clean_key(k): str(v) for k, v in self._tags.items()},
        }
        tags |= {"etem.host": host_tag(), "etem.pid": str(os.getpid())}
        tags |= self._model_runs(tags)
        self.killed = mark_orphans(client, self.experiment_id, tags)
        run = client.create_run(self.experiment_id, tags=tags, run_name=self._run_name)
        self.run_id = run.info.run_id
        self._log_params(flatten(self._params))
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / "config.yaml"
            p.write_text(yaml.safe_dump(self.config.model_dump(mode="json"), sort_keys=False))
            client.log_artifact(self.run_id, str(p))

    def _campaign_run(self, key: str, base_tags: dict[str, str]) -> str:
        """The campaign run of this campaign key, created if missing.

        Parallel jobs may both find none and both create one; each then keeps the oldest
        (start time, then run id) and deletes its own if it is not that one, so they agree on
        a single campaign run.
        """
        client = self._client
        flt = f"tags.`etem.role` = 'campaign' and tags.`etem.campaign_key` = '{key}'"

        def oldest() -> str | None:
            runs = client.search_runs([self.experiment_id], filter_string=flt, max_results=100)
            if not runs:
                return None
            return min(runs, key=lambda r: (r.info.start_time, r.info.run_id)).info.run_id

        found = oldest()
        if found:
            return found
        run = client.create_run(
            self.experiment_id,
            tags={**base_tags, "etem.role": "campaign"},
            run_name=f"campaign {self.config.name} ({key[:8]})",
        )
        client.set_terminated(run.info.run_id, "FINISHED")
        keep = oldest() or run.info.run_id
        if keep != run.info.run_id:
            client.delete_run(run.info.run_id)
        return keep

    def _model_runs(self, tags: dict[str, str]) -> dict[str, str]:
        """Tags linking the training runs of the model files named by ``etem.model.<kind>.sha256``
        tags (model files carry no run id: the run is found by the file's digest)."""
        found: dict[str, str] = {}
        for key, digest in tags.items():
            parts = key.split(".")
            if len(parts) != 4 or parts[:2] != ["etem", "model"] or parts[3] != "sha256":
                continue
            runs = self._client.search_runs(
                [self.experiment_id], max_results=1, order_by=["attributes.start_time DESC"],
                filter_string=f"tags.`etem.model.sha256` = '{digest}'",
            )
            if runs:
                found[f"etem.model.{parts[2]}.run_id"] = runs[0].info.run_id
        if found:
            found["etem.model_run_ids"] = ",".join(found.values())
        return found

    def _upstream_ids(self, key: str) -> list[str]:
        stages = UPSTREAM.get(self.stage, ())
        if not stages:
            return []
        runs = self._client.search_runs(
            [self.experiment_id],
            filter_string=(
                f"tags.`etem.campaign_key` = '{key}' and tags.`etem.role` = 'stage' "
                "and attributes.status = 'FINISHED'"
            ),
            max_results=1000,
        )
        runs = [r for r in runs if r.data.tags.get("etem.stage") in stages]
        return [r.info.run_id for r in runs]

    def _log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param  # lazy: `etem --help` imports runs

        items = [Param(_clean_key(k), str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self._client.log_batch(self.run_id, params=items[i : i + 100])

    def _set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag  # lazy: `etem --help` imports runs

        run_tags = [RunTag(_clean_key(k), v) for k, v in tags.items()]
        self._client.log_batch(self.run_id, tags=run_tags)

    def _log_batch(self, metrics: list[Any]) -> None:
        for i in range(0, len(metrics), 500):
            self._client.log_batch(self.run_id, metrics=metrics[i : i + 500])

    def _register(self, path: Path, name: str, kind: str) -> str:
        from mlflow.entities import LoggedModelStatus  # lazy: `etem --help` imports runs
        from mlflow.exceptions import MlflowException

        client = self._client
        tags = {"etem.model.kind": kind, "etem.model.sha256": file_digest(path),
                "etem.campaign": self.config.name}
        model = client.create_logged_model(self.experiment_id, name=kind,
                                           source_run_id=self.run_id, tags=tags)
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copyfile(path, Path(tmp) / registry_file(kind))  # the same bytes
            client.log_model_artifacts(model.model_id, tmp)
        client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
        try:
            client.create_registered_model(name, tags={"etem.model.kind": kind})
        except MlflowException as exc:  # registered by an earlier training
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        # the source is the logged model's artifact folder: a ``models:/<model id>`` source
        # would be looked up in MLflow's global tracking URI, not this store
        version = client.create_model_version(
            name, source=model.artifact_location, run_id=self.run_id, tags=tags,
            model_id=model.model_id)
        return str(version.version)

    def _end(self, status: str) -> None:
        if self._metrics:
            batch, self._metrics = self._metrics, []
            self._log_batch(batch)
        self._client.set_terminated(self.run_id, status)


#: Tags that identify one Snakemake job: a job that starts again means its earlier runs ended.
JOB_KEY_TAGS = ("etem.config_hash", "etem.stage", "etem.snakemake.rule", "etem.snakemake.wildcards")


def is_orphan(run_tags: dict[str, str], job_tags: dict[str, str] | None = None) -> bool:
    """Whether a RUNNING run can no longer end by itself.

    A run of this host whose process is alive is never an orphan. Otherwise it is one when its
    process ran on this host and is gone (``kill -9``, out-of-memory), or when ``job_tags``
    (the tags of a run starting now) name the same Snakemake job: Snakemake runs a job once at
    a time, so the earlier attempt on another node is dead.
    """
    pid = run_tags.get("etem.pid", "")
    here = run_tags.get("etem.host") == host_tag() and pid.isdigit()
    if here and pid_alive(int(pid)):
        return False
    if job_tags and run_tags.get("etem.snakemake.rule") and all(
        run_tags.get(k) == job_tags.get(k) for k in JOB_KEY_TAGS
    ):
        return True
    return here


def mark_orphans(client: Any, experiment_id: str, job_tags: dict[str, str] | None = None
                 ) -> list[str]:
    """Set the experiment's orphaned RUNNING runs (:func:`is_orphan`) to KILLED; their ids."""
    runs = client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'",
                              max_results=1000)
    killed = []
    for run in runs:
        if run.info.run_id and is_orphan(run.data.tags, job_tags):
            client.set_tag(run.info.run_id, "etem.ended_by", "orphaned: its process is gone")
            client.set_terminated(run.info.run_id, "KILLED")
            killed.append(run.info.run_id)
    if killed:
        log.warning("marked %d orphaned MLflow run(s) KILLED (their jobs were interrupted): %s",
                    len(killed), ", ".join(killed))
    return killed


def search_stage_runs(config: EtemConfig, stage: str | None = None) -> Any:
    """DataFrame of the campaign's stage runs (optionally of one stage), newest first."""
    import mlflow  # lazy: `etem --help` imports runs

    mlflow.set_tracking_uri(tracking_uri(config))
    flt = "tags.`etem.role` = 'stage'"
    if stage:
        flt += f" and tags.`etem.stage` = '{stage}'"
    return mlflow.search_runs(experiment_names=[experiment_name(config)], filter_string=flt)


#: The scheme of a model registry URI: ``models:/NAME/VERSION``.
MODELS_SCHEME = "models:/"


def registered_name(config: EtemConfig, kind: str) -> str:
    """Name in the model registry of a campaign's network: ``<campaign name>-<kind>``."""
    return f"{config.name}-{kind}"


def registry_file(kind: str) -> str:
    """Name of the model file inside a registered model's artifacts."""
    return f"{kind}.pt"


def is_registry_uri(spec: str | os.PathLike[str] | None) -> bool:
    """Whether a model argument is a registry URI (``models:/...``), not a path."""
    return spec is not None and str(spec).startswith(MODELS_SCHEME)


def model_file(spec: str, config: EtemConfig) -> str:
    """A model argument as a local model file: a path unchanged, a registry URI
    ``models:/NAME/VERSION`` or ``models:/NAME/latest`` resolved in the store of
    :func:`tracking_uri` and its file downloaded (once per version, checked against the
    digest recorded at registration) into ``<store folder>/registry/NAME/VERSION/``.

    Raises :class:`InputError` (one line) for a malformed URI, no tracking store, or a name or
    version the registry does not hold. Starts no MLflow run.
    """
    if not is_registry_uri(spec):
        return spec
    with _registry_version(spec, config) as (client, found, uri, db):
        name = str(found.name)
        cache = ((db.parent if db else Path(tempfile.gettempdir()) / "etem-registry"
                  / config_hash({"uri": uri})[:12]) / "registry" / name / str(found.version))
        return str(_download_version(client, found, cache, spec, uri))


def pinned_model(spec: str, config: EtemConfig) -> str:
    """A registry URI checked in the store of :func:`tracking_uri` and pinned to its version
    (``models:/NAME/latest`` -> ``models:/NAME/<newest number>``), so every job of a campaign
    uses the same model; nothing is downloaded. A path is returned unchanged.

    Raises :class:`InputError` (one line) as :func:`model_file`: a malformed URI, no tracking
    store, a name or version the registry does not hold.
    """
    if not is_registry_uri(spec):
        return spec
    with _registry_version(spec, config) as (_, found, _, _):
        return f"{MODELS_SCHEME}{found.name}/{found.version}"


@contextlib.contextmanager
def _registry_version(spec: str, config: EtemConfig) -> Iterator[tuple[Any, Any, str,
                                                                        Path | None]]:
    """(client, model version, store URI, sqlite file or None) of a registry URI, under the
    store's lock; :class:`InputError` (one line) when the URI is malformed, there is no store,
    or the registry holds no such name or version."""
    name, sep, version = spec.removeprefix(MODELS_SCHEME).rpartition("/")
    if not sep or not name or not (version.isdigit() or version == "latest"):
        raise InputError(f"{spec}: expected models:/NAME/VERSION (a number) or "
                         "models:/NAME/latest")
    uri = tracking_uri(config)
    db = Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
    if db is not None and not db.is_file():
        raise InputError(f"{spec}: no MLflow tracking store at {uri} (give the campaign's "
                         "--config, tracking.uri or MLFLOW_TRACKING_URI)")
    from mlflow.exceptions import MlflowException  # lazy: `etem --help` imports runs
    from mlflow.tracking import MlflowClient

    missing = f"{spec}: the model registry of {uri} has no model {name!r}"
    with _store_lock(uri):
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        try:
            if version == "latest":
                versions = client.search_model_versions(f"name = '{name}'")
                if not versions:
                    raise InputError(missing)
                found = max(versions, key=lambda v: int(v.version))
            else:
                found = client.get_model_version(name, version)
        except InputError:
            raise
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise InputError(f"{missing} version {version}" if version != "latest"
                                 else missing) from None
            raise InputError(f"{spec}: the model registry of {uri} is not reachable "
                             f"({_first_line(exc)})") from None
        except Exception as exc:  # a server that does not answer, a damaged store
            raise InputError(f"{spec}: the model registry of {uri} is not reachable "
                             f"({type(exc).__name__}: {_first_line(exc)})") from None
        yield client, found, uri, db


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message (MLflow's run over several)."""
    return (str(exc).strip().splitlines() or [""])[0][:300]


def _download_version(client: Any, version: Any, cache: Path, spec: str, uri: str) -> Path:
    """The model file of a registered version, downloaded into ``cache`` unless there."""
    import mlflow  # lazy: `etem --help` imports runs

    kind = version.tags.get("etem.model.kind", "")
    digest = version.tags.get("etem.model.sha256", "")
    target = cache / registry_file(kind)
    if target.is_file() and (not digest or file_digest(target) == digest):
        return target
    source = str(version.source)
    if source.startswith(MODELS_SCHEME):  # an MLflow 3 logged model: its artifact folder
        source = client.get_logged_model(source.removeprefix(MODELS_SCHEME)).artifact_location
    cache.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache.parent) as tmp:
        got = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=tmp,
                                                       tracking_uri=uri, registry_uri=uri))
        files = sorted(got.rglob("*.pt")) if got.is_dir() else [got]
        if len(files) != 1:
            raise InputError(f"{spec}: the registered model holds no single etem model file")
        if digest and file_digest(files[0]) != digest:
            raise InputError(f"{spec}: the downloaded model file differs from the registered "
                             f"one (digest {file_digest(files[0])}, registered {digest})")
        cache.mkdir(parents=True, exist_ok=True)
        os.replace(files[0], target)
    return target


def _clean_key(key: str) -> str:
    """MLflow keys allow alphanumerics, '_', '-', '.', ' ', '/' only."""
    return "".join(c if c.isalnum() or c in "_-. /" else "_" for c in key)


def _etem_version() -> str:
    return __version__
