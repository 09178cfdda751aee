#!/usr/bin/env bash
# Recipe of the pretrained general denoiser shipped in the package
# (src/etem/models/pretrained/denoiser.pt, model card beside it): build the structures,
# simulate the randomised campaign, train the denoiser (one thread: deterministic, bitwise
# reproducible on CPU). Then: python benchmarks/pretrained_card.py --results [results dir]
# writes the packaged model file and its card.
# Usage: bash benchmarks/pretrained.sh [results dir] [threads] [recipe config]
set -euo pipefail
R=${1:-results/pretrained}
T=${2:-1}
Y=${3:-benchmarks/pretrained.yaml}
C=$R/config.yaml
mkdir -p "$R"
python - "$R" "$Y" <<'PY'
import sys, yaml
r = sys.argv[1]
d = yaml.safe_load(open(sys.argv[2]))
d["results_dir"] = r
yaml.safe_dump(d, open(f"{r}/config.yaml", "w"), sort_keys=False)
PY
for i in 0 1; do etem structures build --config "$C" --shard $i/2 --workers 1 --out "$R/structures/shard_00$i"; done
etem structures gather --config "$C" --out "$R/structures/manifest.csv" "$R/structures/shard_000" "$R/structures/shard_001"
for i in 0 1; do etem simulate --config "$C" --manifest "$R/structures/manifest.csv" --shard $i/2 --out "$R/simulation/shard_00$i.h5"; done
etem simulate-index --out "$R/simulation/index.csv" "$R/simulation/shard_000.h5" "$R/simulation/shard_001.h5"
etem train denoiser --config "$C" --index "$R/simulation/index.csv" --out "$R/models/denoiser.pt" --threads "$T" 2>&1 | tee "$R/train.log"
