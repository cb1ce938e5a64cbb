#!/usr/bin/env bash
# Rebuild the shipped engine MoE op tables from NVIDIA aiconfigurator's published moe_perf tables (Apache-2.0), at
# commit 095f58a51c4ca8e61b66ec108d86f223f8d559ce of github.com/ai-dynamo/aiconfigurator.
#   AIC_REPO=/path/to/an/aiconfigurator/git/dir bash profiles/engine-kernels/make.sh
# (a clone, or the bare copy `fetch` leaves; the Parquet files are read with git show at that commit, so the
# working tree's state does not matter).  Keeps the expert shapes of accelcal's MoE presets with every expert
# TP-split (moe_ep 1, the layouts predict reads), each shape's preferred routing distribution
# (calibrate/moe_table.py DISTRIBUTION_ORDER).  Needs pyarrow (pip install -e '.[parquet]').
set -euo pipefail
cd "$(dirname "$0")"
: "${AIC_REPO:?set AIC_REPO to a clone of https://github.com/ai-dynamo/aiconfigurator}"
COMMIT=095f58a51c4ca8e61b66ec108d86f223f8d559ce
DATA=aic-core/src/aiconfigurator_core/systems/data
MODELS=(deepseek-v3 glm-5 gpt-oss-120b gpt-oss-20b kimi-k2.5 minimax-m2.5 qwen3-235b-a22b qwen3-30b-a3b mixtral-8x7b
        qwen3.5-397b-a17b qwen3.5-122b-a10b qwen3.5-35b-a3b deepseek-moe)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for system in h100_sxm h200_sxm; do
  for release in vllm/0.14.0 sglang/0.5.9 trtllm/1.2.0rc5; do
    engine=${release%/*}
    version=${release#*/}
    src=$DATA/$system/moe/$release/moe_perf.parquet
    git -C "$AIC_REPO" show "$COMMIT:$src" > "$tmp/moe_perf.parquet"
    accelcal import moe-table "$tmp/moe_perf.parquet" --engine "$engine" --moe-ep 1 --force \
      $(printf -- '--model %s ' "${MODELS[@]}") \
      --citation "https://github.com/ai-dynamo/aiconfigurator/blob/$COMMIT/$src (NVIDIA aiconfigurator's moe_perf table: the engine's MoE module forward timed on one GPU given router logits, latency in ms)" \
      --out "${system%_sxm}-$engine-$version-moe.yaml"
  done
done
