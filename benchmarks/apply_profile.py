"""Where the time of ``etem apply`` goes: the network vs everything after it, per stage.

One ``apply_movie`` run (the whole pipeline of :mod:`etem.movies.apply`, as
``benchmarks/movie.py --modes apply`` runs it) on the synthetic counting-mode movie of
``benchmarks/movie.py`` (Gaussian columns every 16 px, Poisson at 0.5 e/px/frame), with wall
clocks (``time.perf_counter``) wrapped around the stages in this process:

* ``network``: :meth:`TiledRunner.run` during the shards (the denoising of every frame);
  ``prepare`` (drift, dose, the polarity pass of the network on frame 0) and ``input``
  (reading, aligning and normalising the frames of the shards) come before the network;
* after the network, per frame: ``find_columns`` (its ``blob_log`` detection and
  ``refine`` refinement), ``likelihood``, the rest of ``frame_columns``, ``shard write``
  (the shard loop minus the above), ``gather input`` (raw frames read again),
  ``tracks`` (trackpy linking), ``statistics`` (frame statistics, change z-maps),
  ``gather write`` (the rest of the gather loop: results.h5, column store);
  and once per movie: ``events``, ``tables`` (parquet/CSV/h5 tables, TIFF),
  ``figures``, ``truth``, summary.

``post-network`` = the shards minus network and input + the gather + summary (everything
after the network, once-per-movie work included). The figure that counts on a shared
machine is the ratio post-network / network measured in the same run.

Usage::

    python benchmarks/apply_profile.py --frames 24 --size 1024 [--model denoiser.pt]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import movie as bench  # benchmarks/movie.py: the synthetic movie, the model

TIMES: dict[str, float] = defaultdict(float)
CALLS: dict[str, int] = defaultdict(int)


def _wrap(owner: Any, name: str, label: str) -> None:
    """Replace ``owner.name`` by a timed wrapper adding its wall time to ``TIMES[label]``."""
    fn: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(fn)
    def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            TIMES[label] += time.perf_counter() - t0
            CALLS[label] += 1

    setattr(owner, name, timed)


def _wrap_iter(owner: Any, name: str, label: str) -> None:
    """Time the iterations of a generator function ``owner.name`` (its ``next`` calls)."""
    fn: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(fn)
    def timed(*args: Any, **kwargs: Any) -> Any:
        it = fn(*args, **kwargs)
        while True:
            t0 = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                TIMES[label] += time.perf_counter() - t0
                return
            TIMES[label] += time.perf_counter() - t0
            yield item

    setattr(owner, name, timed)


def install() -> None:
    """Timers around the stages (module attributes as the callers look them up)."""
    from etem.analysis import columns
    from etem.movies import apply, frame_analysis, gather, outputs, shard
    from etem.movies.frame_analysis import FrameStatistics
    from etem.movies.shard import TiledRunner

    _wrap(TiledRunner, "run", "network")
    _wrap(apply, "prepare_movie", "prepare")
    prep = apply.prepare_movie

    def prepare(*args: Any, **kwargs: Any) -> Any:  # its polarity pass is not the movie's
        before = TIMES["network"]
        try:
            return prep(*args, **kwargs)
        finally:
            TIMES["network in prepare"] += TIMES["network"] - before

    apply.prepare_movie = prepare
    _wrap(apply, "run_shard", "shards")
    _wrap(apply, "gather_results", "gather")
    _wrap(apply, "summarise", "summary")
    _wrap_iter(shard, "_chunks", "input")
    _wrap(shard, "denoise_chunk", "denoise_chunk")
    _wrap(outputs.ColumnStore, "append", "column store")
    _wrap(shard, "frame_columns", "frame_columns")
    _wrap(frame_analysis, "find_columns", "find_columns")
    _wrap(columns, "blob_log_fft", "  blob_log")
    _wrap(columns, "refine_columns", "  refine")
    _wrap(frame_analysis, "likelihood_table", "likelihood")
    _wrap(gather, "_stream", "gather loop")
    _wrap_iter(gather, "aligned_frames", "gather input")
    _wrap(FrameStatistics, "add", "tracks+statistics")
    _wrap(FrameStatistics, "_statistics", "statistics")
    _wrap(FrameStatistics, "_track_motion", "track motion")
    _wrap(gather, "detect", "events")
    _wrap(gather, "write_tables", "tables")
    _wrap(gather, "write_tables_h5", "tables")
    _wrap(gather, "write_tiff", "tables")
    _wrap(gather.figures, "write_figures", "figures")
    _wrap(gather, "score_apply", "truth")


def run(movie_path: Path, model: Any, threads: int) -> dict[str, Any]:
    import torch

    from etem.config import load_config
    from etem.frames.readers import open_movie
    from etem.movies.apply import ApplyModels, apply_movie

    torch.set_num_threads(threads)
    install()
    cfg = load_config(
        None,
        {
            "tracking.enabled": False,
            "apply.io.chunk_frames": 8,
            "apply.events.calibration_frames": 4,
            "apply.io.preview_max_frames": 0,
            "apply.inference.tile_px": 1024,
            "apply.inference.batch_size": 4,
        },
    )
    m = open_movie(str(movie_path))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        summary = apply_movie(m, tmp, cfg, ApplyModels(denoiser=model))
        total = time.perf_counter() - t0
    n = int(summary["n_frames"])
    t = dict(TIMES)
    net = t["network"] - t["network in prepare"]
    # before the network: reading, aligning and normalising the frames
    net_input = t["input"] + t["denoise_chunk"] - net
    shards_post = t["shards"] - t["denoise_chunk"] - t["input"]
    post = shards_post + t["gather"] + t["summary"]
    tracks = t["tracks+statistics"] - t["statistics"] - t["track motion"]
    once = t["events"] + t["tables"] + t["figures"] + t["truth"] + t["summary"]
    stages = {
        "prepare (drift, dose, polarity pass)": t["prepare"],
        "input (read, align, normalise)": net_input,
        "network": net,
        "find_columns": t["find_columns"],
        "  blob_log": t["  blob_log"],
        "  refine": t["  refine"],
        "likelihood": t["likelihood"],
        "frame_columns rest": t["frame_columns"] - t["find_columns"] - t["likelihood"],
        "shard write + loop": shards_post - t["frame_columns"],
        "  of which column tables (shard+gather)": t["column store"],
        "gather input (raw frames again)": t["gather input"],
        "tracks (linking)": tracks,
        "statistics": t["statistics"],
        "track motion": t["track motion"],
        "gather write + loop": t["gather loop"] - t["gather input"] - t["tracks+statistics"],
        "once: events": t["events"],
        "once: tables + TIFF": t["tables"],
        "once: figures": t["figures"],
        "once: truth, summary, rest": t["gather"] - t["gather loop"] - t["events"]
        - t["tables"] - t["figures"] + t["summary"],
    }
    return {
        "frames": n,
        "n_columns_median": summary["n_columns"],
        "n_tracks": summary["n_tracks"],
        "total_s": total,
        "network_s_per_frame": net / n,
        "post_network_s_per_frame": post / n,
        "post_network_per_frame_loop_s": (post - once) / n,
        "ratio_post_over_network": post / net,
        "stages_s_per_frame": {k: v / n for k, v in stages.items()},
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load": os.getloadavg(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--frames", type=int, default=24, help="movie length")
    ap.add_argument("--size", type=int, default=1024, help="frame size [px]")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--model", help="denoiser .pt (default: benchmarks/movie.py's model)")
    ap.add_argument("--movie", type=Path, help="reuse this movie file (made when missing)")
    ap.add_argument("--json", type=Path, help="write the result here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.movie or Path(tmp) / "movie.h5"
        if not path.exists():
            bench.make_movie(path, args.frames, args.size)
        model = bench._model(args.model)
        res = run(path, model, args.threads)
    res["command"] = "python benchmarks/apply_profile.py " + " ".join(sys.argv[1:])
    print(f"{'stage':40s} s/frame")
    for k, v in res["stages_s_per_frame"].items():
        print(f"{k:40s} {v:7.3f}")
    print(json.dumps({k: v for k, v in res.items() if k != "stages_s_per_frame"}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
