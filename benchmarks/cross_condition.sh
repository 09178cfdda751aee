#!/usr/bin/env bash
# Cross-condition benchmark at demo scale: a randomised-microscope campaign and the demo's
# fixed-microscope campaign on the same structures, one supervised denoiser trained on each,
# both scored on the randomised campaign's test / held-out-structure / held-out-condition
# images (conditions_summary.csv), and on the evaluated structures simulated through the other
# abTEM code paths of evaluation.code_paths (groups split=code_path|condition=NAME); likewise
# one occupancy segmenter each, scored per condition beside intensity counting
# (segmentation_conditions.csv).
# Usage: bash benchmarks/cross_condition.sh [results dir]
set -euo pipefail
R=${1:-results/cross_condition}
C=$R/config.yaml
mkdir -p "$R"
python - "$R" <<'PY'
import sys, yaml
r = sys.argv[1]
d = yaml.safe_load(open("benchmarks/cross_condition.yaml"))
d["results_dir"] = r
yaml.safe_dump(d, open(f"{r}/config.yaml", "w"))
fixed = dict(d, name="xcond-fixed", results_dir=f"{r}/fixed")
fixed["simulation"] = {k: v for k, v in d["simulation"].items() if k != "microscope"}
yaml.safe_dump(fixed, open(f"{r}/config_fixed.yaml", "w"))
fast = dict(d, noise=dict(d["noise"], benchmark_doses_e_per_A2=[12.5]))
fast["evaluation"] = dict(d["evaluation"], umse_images=0, calibration_vacuum_images=4,
                         mohan_protocol=False)
yaml.safe_dump(fast, open(f"{r}/config_bench.yaml", "w"))
PY
for i in 0 1; do etem structures build --config "$C" --shard $i/2 --workers 1 --out "$R/structures/shard_00$i"; done
etem structures gather --config "$C" --out "$R/structures/manifest.csv" "$R/structures/shard_000" "$R/structures/shard_001"
CODE_PATHS=$(python -c "import yaml,sys; print(' '.join(c['name'] for c in yaml.safe_load(open(sys.argv[1]))['evaluation']['code_paths']))" "$C")
CP_ARGS=()
for cp in $CODE_PATHS; do
  etem simulate-code-path --config "$C" --manifest "$R/structures/manifest.csv" --code-path "$cp" --out "$R/simulation/code_paths/$cp/shard_000.h5"
  etem simulate-index --out "$R/simulation/code_paths/$cp/index.csv" "$R/simulation/code_paths/$cp/shard_000.h5"
  CP_ARGS+=(--code-path "$cp=$R/simulation/code_paths/$cp/index.csv")
done
for tag in "" fixed; do
  cfg=$C; out=$R
  if [ -n "$tag" ]; then cfg=$R/config_fixed.yaml; out=$R/fixed; mkdir -p "$out"; fi
  for i in 0 1; do etem simulate --config "$cfg" --manifest "$R/structures/manifest.csv" --shard $i/2 --out "$out/simulation/shard_00$i.h5"; done
  etem simulate-index --out "$out/simulation/index.csv" "$out/simulation/shard_000.h5" "$out/simulation/shard_001.h5"
  etem train denoiser --config "$cfg" --index "$out/simulation/index.csv" --out "$out/models/denoiser.pt" --threads 2
  etem train segmenter --config "$cfg" --index "$out/simulation/index.csv" --out "$out/models/segmenter.pt" --threads 2
  etem evaluate --config "$R/config_bench.yaml" --index "$R/simulation/index.csv" --denoiser "$out/models/denoiser.pt" --segmenter "$out/models/segmenter.pt" "${CP_ARGS[@]}" --out "$out/evaluation"
done
