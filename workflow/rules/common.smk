# Helpers shared by the rules: the results layout, shard lists, the per-stage config files and
# the command prefix every rule uses. Paths come from etem.paths.Layout (one definition).
# Nothing here writes a file while the rules are parsed: `snakemake -n` writes nothing into
# results/ (the per-stage configs are outputs of the rule stage_config below).

import os
import re
import shlex
import shutil
import sys

from etem.cluster.resources import gather_mem_mb, gather_runtime_min
from etem.config import STAGE_SECTIONS, stage_yaml
from etem.errors import ConfigError
from etem.movies.plan import shard_ranges
from etem.movies.sheet import (
    campaign_models,
    campaign_movies,
    evaluated_networks,
    movie_groups,
    network_denoised,
    row_arguments,
    row_networks,
)
from etem.paths import Layout
from etem.runs import is_registry_uri, tracking_uri

# Jobs call the `etem` of the environment Snakemake runs in (e.g. .venv/bin/snakemake without
# an activated venv): put its folder first on the jobs' PATH. Every job records its MLflow run
# in the campaign's store (MLFLOW_TRACKING_URI of the submitting shell wins).
_BIN = os.path.dirname(sys.executable)
_PREFIX = "set -euo pipefail; "
if shutil.which("etem") != os.path.join(_BIN, "etem") and os.path.exists(os.path.join(_BIN, "etem")):
    _PREFIX += f"export PATH={shlex.quote(_BIN)}:\"$PATH\"; "
_PREFIX += (
    f"_etem_store={shlex.quote(tracking_uri(ETEM))}; "
    'export MLFLOW_TRACKING_URI="${MLFLOW_TRACKING_URI:-$_etem_store}"; '
)
# shell.prefix is formatted like a rule's command: literal braces are doubled.
shell.prefix(_PREFIX.replace("{", "{{").replace("}", "}}"))

LAYOUT = Layout(ETEM.results_path)
RESULTS = str(LAYOUT.root)
STRUCTURE_SHARDS = [f"{i:03d}" for i in range(ETEM.structures.n_shards)]
SIMULATION_SHARDS = [f"{i:03d}" for i in range(ETEM.simulation.n_shards)]
# shards of each code path (evaluation.code_paths: name -> number of simulation jobs)
CODE_PATHS = {cp.name: cp.n_shards or ETEM.simulation.n_shards for cp in ETEM.evaluation.code_paths}


def code_path_shards(name):
    """The shard files of code path ``name``."""
    return [str(LAYOUT.code_path_shard(name, i)) for i in range(CODE_PATHS[name])]


ENV = "../../envs/etem.yaml"
# Rules call `etem --tag rule=<name> ...` so MLflow records the rule of each run.


def mem_mb(base):
    """mem_mb that grows with the attempt, so --retries recovers from out-of-memory kills."""
    return lambda wildcards, attempt: base * attempt


def runtime_min(base):
    """Runtime [min] that grows with the attempt, so --retries recovers from time-outs."""
    return lambda wildcards, attempt: base * attempt


def config_of(stage):
    """The resolved config file of ``stage`` (an input of every rule of that stage)."""
    return str(LAYOUT.stage_config(stage))


# The campaign's movies (etem.movies.sheet): the sheet's rows (validated, every movie opened or
# found in the frame-count cache .snakemake/etem/movie_shapes.json) and the synthetic movie.
# A bad row fails here, before any job, with one line naming the sheet line and column.
# A model named by a row (<kind>_model) or by apply.models may be a registry URI
# (models:/NAME/VERSION|latest): checked here in the campaign's store, passed to the jobs as
# their argument (model_arguments), never as an input file (model_files).
# Groups of the sheet (movies.group_training): one blind-spot network per group, trained on
# all its movies (rule train_group), denoises that group's movies. GROUP_MOVIES holds one
# argument per movie (its file, folder or glob pattern, which the training expands like the
# sheet), GROUP_FILES every file they name (the job's inputs).
try:
    MOVIES = {row.name: row for row in campaign_movies(ETEM, LAYOUT.synthetic_movie)}
    # apply.models: files checked, registry URIs checked in the store and pinned (one line
    # naming the key when the store is unreachable or lacks the name or version)
    CONFIG_MODELS = campaign_models(ETEM)
    GROUPS = movie_groups(list(MOVIES.values())) if ETEM.movies.group_training else {}
    GROUP_MOVIES = {g: [r.source for r in rows] for g, rows in GROUPS.items()}
    GROUP_FILES = {g: [f for r in rows for f in r.files] for g, rows in GROUPS.items()}
except ConfigError as exc:
    raise WorkflowError(str(exc))


def apply_model(kind, row):
    """The model of ``kind`` movie ``row`` is applied with (a file, or a registry URI pinned to
    its version): the sheet row's ``<kind>_model``, its group's blind-spot network, the
    config's apply.models, else the campaign's own network."""
    if kind in row.models:
        return row.models[kind]
    if kind == "unsupervised" and row.group in GROUPS:
        return str(LAYOUT.group_model(row.group))
    return CONFIG_MODELS.get(kind, str(LAYOUT.model(kind)))


CALIBRATION = str(LAYOUT.evaluation_dir / "likelihood_calibration.json")


def movie_models(name):
    """A movie's models by the jobs' option (--denoiser, --unsupervised, --segmenter,
    --calibration): the networks etem.movies.sheet.row_networks gives it (a movie that a
    classical filter denoises gets the segmenter only, so no denoising network is trained
    for it) and the likelihood calibration when a network may denoise it."""
    row = MOVIES[name]
    models = {kind: apply_model(kind, row) for kind in row_networks(row, ETEM)}
    if network_denoised(row, ETEM):
        models["calibration"] = CALIBRATION
    return models


def model_files(wildcards):
    """Input function: the movie's model files; none for a registry URI (models:/...), which
    is no file for Snakemake to make or wait for (the jobs resolve it: etem.runs)."""
    return [m for m in movie_models(wildcards.movie).values() if not is_registry_uri(m)]


def model_arguments(wildcards):
    """Params function: the jobs' model options, each option and its value one word."""
    return [w for kind, m in movie_models(wildcards.movie).items() for w in (f"--{kind}", m)]


# The campaign's own networks its evaluation benchmarks (models/<kind>.pt, so trained): all
# three when a network may denoise a movie, else only the segmenter the movies use (none when
# classical filters denoise every movie and the segmenter comes from elsewhere).
EVALUATED_NETWORKS = evaluated_networks(list(MOVIES.values()), ETEM)
MOVIE_NAMES = "|".join(re.escape(name) for name in MOVIES)


def processed_frames(name):
    """Frames of a movie after summing (apply.preprocess.sum_frames)."""
    return (MOVIES[name].n_frames or 0) // ETEM.apply.preprocess.sum_frames


def movie_shards(name):
    """Processed-frame ranges [start, stop) of a movie's shard jobs."""
    a = ETEM.apply
    return shard_ranges(processed_frames(name), a.io.shard_frames, a.io.chunk_frames)


def gather_runtime(wildcards, attempt):
    """Wall time [min] of a movie's gather job: it goes through every frame on one core, so
    it grows with the movie (etem.cluster.resources), and with the attempt (--retries)."""
    frames = processed_frames(wildcards.movie)
    return attempt * gather_runtime_min(frames, MOVIES[wildcards.movie].frame_px)


def gather_mem(wildcards, attempt):
    """Memory [MB] of a movie's gather job (per-frame statistics grow with the movie)."""
    return attempt * gather_mem_mb(processed_frames(wildcards.movie))


def movie_files(wildcards):
    """The movie's files (the jobs' inputs, so a changed frame re-runs them): the file, the
    folder, or the glob's files."""
    return list(MOVIES[wildcards.movie].files)


def movie_source(wildcards):
    """The one argument a job opens the movie by (--movie): the file, the folder or the glob
    pattern (expanded by etem, like the sheet), never one argument per frame (thousands of
    frames would outgrow the command line)."""
    return MOVIES[wildcards.movie].source


def movie_arguments(wildcards):
    """The row's own settings (pixel size, dose, frame time, denoiser, fine-tuning)."""
    return row_arguments(MOVIES[wildcards.movie])


def shard_files(wildcards):
    n = len(movie_shards(wildcards.movie))
    return [str(LAYOUT.apply_shard(wildcards.movie, i)) for i in range(n)]


def shard_range(wildcards):
    start, stop = movie_shards(wildcards.movie)[int(wildcards.shard)]
    return f"{start}:{stop}"


def movie_tags(wildcards):
    group = MOVIES[wildcards.movie].group
    return ["--tag", f"etem.group={group}"] if group else []
