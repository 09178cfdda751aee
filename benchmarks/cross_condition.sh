#!/usr/bin/env bash
# Cross-condition benchmark at demo scale: a randomised-microscope campaign and the demo's
# fixed-microscope campaign on the same structures, one supervised denoiser trained on each,
# both scored on the randomised campaign's test / held-out-structure / held-out-condition
# images (conditions_summary.csv). Usage: bash benchmarks/cross_condition.sh [results dir]
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
fast["benchmark"] = dict(d["benchmark"], umse_images=0, calibration_vacuum_images=4,
                         mohan_protocol=False)
yaml.safe_dump(fast, open(f"{r}/config_bench.yaml", "w"))
PY
for i in 0 1; do etem structures build --config "$C" --shard $i/2 --workers 1 --out "$R/structures/shard_00$i"; done
etem structures gather --config "$C" --out "$R/structures/manifest.csv" "$R/structures/shard_000" "$R/structures/shard_001"
for tag in "" fixed; do
  cfg=$C; out=$R
  if [ -n "$tag" ]; then cfg=$R/config_fixed.yaml; out=$R/fixed; mkdir -p "$out"; fi
  for i in 0 1; do etem simulate --config "$cfg" --manifest "$R/structures/manifest.csv" --shard $i/2 --out "$out/simulation/shard_00$i.h5"; done
  etem simulate-index --out "$out/simulation/index.csv" "$out/simulation/shard_000.h5" "$out/simulation/shard_001.h5"
  etem train denoiser --config "$cfg" --index "$out/simulation/index.csv" --out "$out/models/denoiser.pt" --threads 2
  etem benchmark --config "$R/config_bench.yaml" --index "$R/simulation/index.csv" --denoiser "$out/models/denoiser.pt" --out "$out/benchmark"
done
