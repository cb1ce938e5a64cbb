"""Serving accuracy: accelcal's engine model against published end-to-end measurements (Qwen3-32B on H100 SXM).

    $ python benchmarks/serving_accuracy.py          # every row: profiles/nvidia-h100.yaml + the shipped NVSwitch profile
    $ python benchmarks/serving_accuracy.py --data other.csv --rows      # other published rows (models, devices)
    $ python benchmarks/serving_accuracy.py --interconnect none          # TP=1 rows only (the device profile alone)
    $ python benchmarks/serving_accuracy.py --deployment default --rows  # engines at their own defaults instead
    $ python benchmarks/serving_accuracy.py --turnaround-ms 1,5,20       # sensitivity to the client turnaround
    $ python benchmarks/serving_accuracy.py --client-gap-ms 0,10,30      # ... and to the client's pause between requests
    $ python benchmarks/serving_accuracy.py --engine-arg overlap_scheduling=false   # an ablation of one engine key

Every row of the CSV (``--data``, default ../shared/data/serving-dev/qwen3-32b-h100.csv relative to the repo;
aiconfigurator's silicon-sample columns) the profiles can cost is predicted with ``predict_serving``
(step-level simulation): backend -> engine preset, precision fp8 -> fp8_e4m3 weights (fp4 or int4 on a model whose
checkpoint stores its experts weight-only in 4 bits, gpt-oss's mxfp4 or Kimi-K2.5's int4: the model as published), batch_size ->
closed-loop concurrency, isl/osl fixed, model_path -> the preset citing that Hugging Face id (or ``--model``),
system -> the measured profile that ships for it (h100_sxm, h200_sxm; or ``--profile``), moe_ep_size = tp_size
-> experts spread over the TP group.  Rows it cannot cost (another model or device, disaggregated serving,
attention DP, other precisions) are counted under "not predicted" with the reason.

The rows are NVIDIA aiconfigurator's silicon sample, and aiconfigurator's generator writes the engine
configurations and the benchmark its published silicon measurements are run with.  So by default
(``--deployment aiconfigurator``) each engine gets that recipe's settings (token budget, batch size, KV
fraction, CUDA graph sizes, fp8 KV cache for fp8 weights; accelcal.planner.serving.deployment cites every
rule) and the load is the benchmark of aiconfigurator's automated evaluation, which deployed the generator's
configurations and measured them while these engine versions were current (2025-08-22 to 2026-03-03:
src/aiconfigurator/eval/benchmarks/genai_perf_runner.py from 961028348, genai-perf, then aiperf from 4361371a6,
removed in c0c44d911): 10 x concurrency requests after 2 x concurrency of warm-up (the generator's own
bench_run.sh.j2, added later, sends 50 x concurrency at f90534bc2 and 20 x at HEAD: ``--requests-per-client``),
the warm-up drained before the measured requests start together (aiperf docs/tutorials/warmup.md: it "waits indefinitely for all
warmup responses before starting profiling").  ``--deployment
default`` runs the engines at their own defaults (the KV cache then stays bf16 unless ``--fp8-kv-dtype``).

Rows of another workflow say so in the ``silicon_data_source`` column newer copies of the file carry:
those from SemiAnalysis' InferenceMAX runs (``--client auto`` finds them, row_client says how) were measured
with its ``benchmark_serving.py`` client, whose lengths vary (uniform in 0.8 x .. x), and are predicted with
that client (InferenceMaxClient cites each value); their engine settings stay the ``--deployment`` recipe's.

Prints mean and median |relative error| of TTFT and TPOT overall, by engine and by TP, the rows not
predicted and why, and the rows called infeasible; where rows differ only in output length, the split of TPOT
into a decode step and prefill interference (``split_tpot``) and the prefill work one request lives through
wherever the queue puts it (``prefill_exposure``: what one prefill costs the engine beyond the prediction), and
how TTFT grows with the request's lifetime (``ttft_lifetime_slope``: a wait for a running request to finish);
how the measured decode step outgrows the predicted one with the batch (``decode_excess``: a cost per running
sequence), and what TTFT measures beyond the prediction at each layout's lightest load, by prompt length
(``light_load_excess``: a dearer prefill grows with the prompt, a per-request cost outside the engine does not);
with several ``--turnaround-ms`` or ``--client-gap-ms`` values, one summary per pair.  Nothing here is fitted to these rows.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import NamedTuple
from pathlib import Path

import numpy as np
import pandas as pd

from accelcal.atomic import atomic_write_text
from accelcal.preflight import DestinationError, check_file
from accelcal.calibrate.priors import same_device_model
from accelcal.calibrate.profile import Profile
from accelcal.progress import StageProgress
from accelcal.models import ModelConfig
from accelcal.planner.serving.deployment import DEPLOYMENTS, apply_deployment
from accelcal.planner.serving.engine import EnginePreset
from accelcal.planner.serving.moe_op import load_moe_tables
from accelcal.planner.serving.predict import combine_profiles, predict_serving
from accelcal.planner.serving.step_cost import StepCoster, StepCostError, replica_parallelism
from accelcal.planner.serving.workload import ServingWorkload

ROOT = Path(__file__).resolve().parents[1]
ENGINES = {"vllm": "vllm", "sglang": "sglang", "trtllm": "trtllm"}


SYSTEM_PROFILES = {"h100_sxm": "profiles/nvidia-h100.yaml", "h200_sxm": "profiles/nvidia-h200.yaml"}
"""Published ``system`` -> the measured device profile that ships for it (others: --profile)."""
SYSTEM_INTERCONNECTS = {
    "h100_sxm": ("profiles/interconnect/h100-nvswitch-4of8.yaml", None),
    "h200_sxm": ("profiles/interconnect/h100-nvswitch-4of8.yaml",
                 "h200_sxm TP > 1: the H100 NVSwitch interconnect profile stands in (published H100 measurements; "
                 "H100 SXM and H200 SXM both have 900 GB/s NVLink per GPU, profiles/datasheet/h*-sxm.yaml), not an "
                 "H200 measurement"),
}
"""Published ``system`` -> (intra-node interconnect profile, note when it is a stand-in)."""


CLIENTS: tuple[str, ...] = ("auto", "aiconfigurator", "inferencemax")
"""Benchmark workflows a row can come from (``--client``); ``auto`` reads the row's provenance (row_client)."""


@dataclass(frozen=True)
class InferenceMaxClient:
    """The benchmark client of SemiAnalysis' InferenceMAX workflow: ``benchmark_serving.py`` (kimbochen/bench_serving)
    at a fixed concurrency, ``--request-rate inf --ignore-eos``."""

    range_ratio: float = 0.8
    """--random-range-ratio: the workflow's default (InferenceMAX .github/workflows/benchmark-tmpl.yml input
    ``random-range-ratio`` default '0.8', as read in ROCm/InferenceMAX at 03067ca9; its README's client table:
    RANDOM_RANGE_RATIO 0.8)."""
    range_mode: str = "below"
    """Lengths uniform in x r .. x: kimbochen/bench_serving benchmark_serving.py sample_random_requests at 406abc35
    draws ``np.random.randint(int(input_len * range_ratio), input_len + 1)`` for prompts and outputs alike."""
    prompts_per_client: int = 10
    """--num-prompts $(( CONC * 10 )) with --max-concurrency $CONC (InferenceMAX README's client command and
    its benchmark scripts)."""
    trtllm_attention_dp_balance_iters: int = 60
    """A server flag of all its TensorRT-LLM scripts (INFERENCEMAX_SCRIPTS has the other flags of the scripts
    read): they turn on attention-DP balance whenever
    they turn on attention DP (``attention_dp_config: {batching_wait_iters: 0, enable_balance: true, timeout_iters:
    60}`` in the DeepSeek-R1 fp8 scripts, as read in copies in the code index): EnginePreset.attention_dp_balance_iters."""
    # its one "initial single prompt test run" (and the --num-warmups 2 x CONC of later copies, awaited before the
    # run) leave an idle engine behind: the measured prompts start as one burst, as a drained warm-up does


INFERENCEMAX = InferenceMaxClient()

_INFERENCEX = "github.com/SemiAnalysisAI/InferenceX (InferenceMAX's repository)"
_AUTO_KV = ("no KV cache dtype given: the engine's 'auto', the model's own dtype, bf16 (vLLM engine arguments "
            "--kv-cache-dtype: 'If auto, will use model data type'; SGLang and TensorRT-LLM likewise)")
_LLAMA70B_RUN = ("the Llama-3.1-70B rows were measured on 2025-10-29 (their silicon_data_source), when InferenceX "
                 "9596d23d7 (2025-10-29) ran .github/workflows/70b-tmpl.yml")


def trtllm_padded_graph_sizes(max_batch: int) -> list[int]:
    """The decode batch sizes TensorRT-LLM captures for cuda_graph_config {enable_padding: true, max_batch_size:
    max_batch}: [1, 2, 4], the multiples of 8 to 128, then powers of two from 256 below max_batch, and max_batch
    itself (CudaGraphConfig._generate_cuda_graph_batch_sizes, as read in copies in the code index)."""
    sizes = [1, 2, 4] + [8 * i for i in range(1, 17)]
    p = 256
    while p < max_batch:
        sizes.append(p)
        p *= 2
    return sorted({s for s in sizes if s <= max_batch} | {max_batch})


def sglang_graph_sizes(max_bs: int) -> list[int]:
    """The decode batch sizes SGLang 0.5.9 captures for --cuda-graph-max-bs max_bs (padding on, no speculative
    decoding): [1, 2, 4, 8, 12], 16..256 by 8, 272..496 by 16, 512.. by 32, those up to max_bs (sglang 0.5.9 wheel,
    srt/server_args.py ServerArgs._generate_cuda_graph_batch_sizes)."""
    sizes = [1, 2, 4, 8, 12] + list(range(16, 257, 8)) + list(range(272, 512, 16)) + list(range(512, max_bs + 1, 32))
    return [s for s in sizes if s <= max_bs]


@dataclass(frozen=True)
class ServerScript:
    """The server flags one InferenceMAX benchmark script gives its engine, as engine preset keys, for the rows it
    measured: applied over the --deployment recipe to the rows of its workflow (row_client), under --engine-arg."""

    engine: str
    """Engine preset name of its rows."""
    model: str
    """accelcal model preset its rows resolve to."""
    system: str
    """The rows' system column."""
    image_version: str
    """The engine release the workflow's image ran: the release defaults for rows that record no version."""
    overrides: dict
    """Engine preset key -> value the script sets, at every shape: a number or list, "$CONC" (the benchmark
    concurrency, as the scripts pass it), or a function of (isl, osl, tp, concurrency) for a value the script
    computes from them (a token budget from the shape)."""
    source: str
    """The script, its commit and what each value comes from."""
    versions: tuple[str, ...] = ("",)
    """The rows' backend_version values this script measured ("": rows that record none); rows of another
    release ran another copy of the script."""
    shape_overrides: tuple = ()
    """((isl, osl, tp_below, {key: value}), ...): keys set only at that shape and at a TP below tp_below."""
    defaults: tuple[str, ...] = ()
    """Engine preset keys the script leaves unset where the --deployment recipe sets them: they take the engine's
    own default for the release and device (the recipe ``default``)."""
    kv_dtype: str | None = None
    """The KV cache dtype the script runs ("bf16" where it passes none and the engine's "auto" is the model's own
    dtype); None: the --deployment recipe's."""

    def for_row(self, isl: int, osl: int, tp: int, concurrency: int) -> dict:
        """The overrides this script gives a row of shape isl x osl at this TP and benchmark concurrency."""
        out = dict(self.overrides)
        for i, o, below, extra in self.shape_overrides:
            if (isl, osl) == (i, o) and tp < below:
                out.update(extra)
        return {k: (v(isl, osl, tp, concurrency) if callable(v) else concurrency if v == "$CONC" else v)
                for k, v in out.items()}


INFERENCEMAX_SCRIPTS: tuple[ServerScript, ...] = (
    ServerScript(
        "trtllm", "llama3.1-70b", "h200_sxm", "1.1.0rc2.post2",
        {"token_budget": 16384, "cuda_graph_sizes": trtllm_padded_graph_sizes(1024), "cuda_graph_padding": True},
        f"{_INFERENCEX} benchmarks/70b_fp8_h200_trt_slurm.sh at 9596d23d7 (its flags unchanged since 1b563c858, "
        f"2025-09-18; image nvcr.io#nvidia/tensorrt-llm/release:1.1.0rc2.post2 in 70b-tmpl.yml; {_LLAMA70B_RUN}): "
        f"trtllm-serve --max_num_tokens 16384, no --max_batch_size (default 2048), cuda_graph_config enable_padding "
        f"true max_batch_size 1024, kv_cache_config dtype fp8 with no free_gpu_memory_fraction (default 0.9), no "
        f"chunked prefill or overlap setting (defaults: off, on); at 1024 x 1024 and TP < 8 "
        f"batch_wait_max_tokens_ratio 0.9 and batch_wait_timeout_iters 20",
        shape_overrides=((1024, 1024, 8, {"batch_wait_timeout_iters": 20, "batch_wait_max_tokens_ratio": 0.9}),),
        defaults=("max_seqs", "memory_fraction", "chunked_prefill", "overlap_scheduling"), kv_dtype="fp8_e4m3"),
    *(ServerScript(
        "vllm", "llama3.1-70b", system, "0.10.2",
        {"token_budget": 8192, "max_seqs": "$CONC", "memory_fraction": 0.9, "overlap_scheduling": True},
        f"{_INFERENCEX} benchmarks/{script} at 9596d23d7 (flags unchanged since {since}; image "
        f"vllm/vllm-openai:v0.10.2 in 70b-tmpl.yml; {_LLAMA70B_RUN}): config.yaml max-num-batched-tokens 8192, "
        f"async-scheduling true, kv-cache-dtype fp8, no-enable-prefix-caching; vllm serve --gpu-memory-utilization "
        f"0.9 --max-num-seqs $CONC", kv_dtype="fp8_e4m3")
      for system, script, since in (("h200_sxm", "70b_fp8_h200_slurm.sh", "eb282d8f6, 2025-09-27"),
                                    ("h100_sxm", "70b_fp8_h100_slurm.sh", "af4ccd03f, 2025-09-23"))),
    *(ServerScript(
        "vllm", "gpt-oss-120b", system, "0.18.0",
        {"token_budget": 8192, "max_seqs": "$CONC", "memory_fraction": 0.9},
        f"{_INFERENCEX} benchmarks/single_node/{script} at cec542a9a (2026-03-27, which moved it to image "
        f"vllm/vllm-openai:v0.18.0; its rows were measured on 2026-03-27): config.yaml max-num-batched-tokens 8192, "
        f"no-enable-prefix-caching, max-cudagraph-capture-size 2048; vllm serve --gpu-memory-utilization 0.9 "
        f"--max-num-seqs $CONC, no --kv-cache-dtype ({_AUTO_KV})", versions=("0.18.0",), kv_dtype="bf16")
      for system, script in (("h200_sxm", "gptoss_fp4_h200.sh"), ("h100_sxm", "gptoss_fp4_h100.sh"))),
    ServerScript(
        "vllm", "gpt-oss-120b", "h100_sxm", "0.11.2",
        {"token_budget": 8192, "max_seqs": "$CONC", "memory_fraction": 0.9, "overlap_scheduling": True},
        f"{_INFERENCEX} benchmarks/gptoss_fp4_h100_slurm.sh at 4e135fd3f (2025-12-08, the day its 0.11.2 rows were "
        f"measured; image vllm/vllm-openai:v0.11.2 in .github/configs/nvidia-master.yaml gptoss-fp4-h100-vllm): config.yaml "
        f"async-scheduling true, no-enable-prefix-caching, max-cudagraph-capture-size 2048, max-num-batched-tokens "
        f"8192; vllm serve --gpu-memory-utilization 0.9 --max-num-seqs $CONC, no --kv-cache-dtype ({_AUTO_KV})",
        versions=("0.11.2",), kv_dtype="bf16"),
    ServerScript(
        "vllm", "minimax-m2.5", "h200_sxm", "0.18.0",
        {"memory_fraction": 0.95},
        f"{_INFERENCEX} benchmarks/single_node/minimaxm2.5_fp8_h200.sh at a36346339 (2026-03-01, which added it "
        f"with image vllm/vllm-openai:v0.16.0; its 0.16.0 rows were measured that day) and at 1d5cae141 (2026-03-27, "
        f"which moved it to v0.18.0; its 0.18.0 rows were measured on 2026-03-27 and 28): vllm serve "
        f"--gpu-memory-utilization 0.95 (and from 1d5cae141 --enable-expert-parallel where EP >= 1), no --max-num-seqs or "
        f"--max-num-batched-tokens (vLLM's defaults on an H200: 1024 and 8192, the vllm preset's) or "
        f"--kv-cache-dtype ({_AUTO_KV})",
        versions=("0.16.0", "0.18.0"), defaults=("max_seqs", "token_budget"), kv_dtype="bf16"),
    ServerScript(
        "vllm", "minimax-m2.5", "h100_sxm", "0.18.0",
        {"memory_fraction": 0.90, "max_seqs": 256},
        f"{_INFERENCEX} benchmarks/single_node/minimaxm2.5_fp8_h100.sh at 1d5cae141 (2026-03-27, which moved it to "
        f"image vllm/vllm-openai:v0.18.0; its rows were measured on 2026-03-27 and 28): vllm serve "
        f"--gpu-memory-utilization 0.90 --max-num-seqs 256 (--enable-expert-parallel where EP >= 1), "
        f"--compilation-config cudagraph_mode PIECEWISE (attention outside the captured graphs: not modelled, the "
        f"decode steps are costed as full graphs), no --max-num-batched-tokens (vLLM's default on an H100: 8192) or "
        f"--kv-cache-dtype ({_AUTO_KV})",
        versions=("0.18.0",), defaults=("token_budget",), kv_dtype="bf16"),
    ServerScript(
        "vllm", "kimi-k2.5", "h200_sxm", "0.16.0",
        {"memory_fraction": 0.95, "max_seqs": "$CONC"},
        f"{_INFERENCEX} benchmarks/single_node/kimik2.5_int4_h200.sh at 749096c4c (2026-03-02, image "
        f"vllm/vllm-openai:v0.16.0; rows measured that day and, after 79a42e20a turned prefix caching off, on "
        f"2026-03-27): vllm serve --gpu-memory-utilization 0.95 --max-num-seqs $CONC, fuse_allreduce_rms "
        f"(not modelled), no --max-num-batched-tokens or --kv-cache-dtype ({_AUTO_KV})",
        versions=("0.16.0",), defaults=("token_budget",), kv_dtype="bf16"),
    ServerScript(
        "sglang", "deepseek-v3", "h200_sxm", "0.5.9",
        {"max_seqs": 256, "cuda_graph_sizes": sglang_graph_sizes(256), "token_budget": 32768,
         "prefill_batch_tokens": 32768, "memory_fraction": 0.82},
        f"{_INFERENCEX} benchmarks/single_node/dsr1_fp8_h200.sh at 12ba0ae07 (2026-03-25, the day its DeepSeek-R1 "
        f"and -V3 rows were measured; flags unchanged since 8d81e0bf4, 2026-02-19; image lmsysorg/sglang:v0.5.9-cu130 "
        f"in .github/configs/nvidia-master.yaml dsr1-fp8-h200-sglang): sglang.launch_server --max-running-requests "
        f"and --cuda-graph-max-bs 512 at 1024 x 1024, else 256, --chunked-prefill-size 32768 --max-prefill-tokens "
        f"32768 --mem-fraction-static 0.82 --disable-radix-cache --attention-backend flashinfer --stream-interval 10 "
        f"(its first token still leaves at once: sglang 0.5.9 streams when len(output_ids) % interval == 1), no "
        f"--kv-cache-dtype ({_AUTO_KV})",
        versions=("0.5.9",), kv_dtype="bf16",
        shape_overrides=((1024, 1024, 1 << 30, {"max_seqs": 512, "cuda_graph_sizes": sglang_graph_sizes(512)}),)),
    ServerScript(
        "sglang", "qwen3.5-397b-a17b", "h200_sxm", "0.5.9",
        {"max_seqs": 128, "token_budget": 16384, "memory_fraction": 0.8,
         "cuda_graph_sizes": lambda isl, osl, tp, c: sglang_graph_sizes(c)},
        f"{_INFERENCEX} benchmarks/single_node/qwen3.5_fp8_h200.sh at f65d6b4b1 (2026-03-04, which added it with "
        f"image lmsysorg/sglang:v0.5.9-cu129-amd64; 29 of its 30 rows were measured that day, one on 2026-03-09 "
        f"with the same flags): sglang.launch_server --max-running-requests 128 --chunked-prefill-size 16384 "
        f"--mem-fraction-static 0.8 --cuda-graph-max-bs $CONC --kv-cache-dtype fp8_e4m3 --disable-radix-cache "
        f"--enable-flashinfer-allreduce-fusion (not modelled)",
        versions=("0.5.9",), kv_dtype="fp8_e4m3"),
    ServerScript(
        "sglang", "glm-5", "h200_sxm", "glm5-hopper",
        {"memory_fraction": 0.85},
        f"{_INFERENCEX} benchmarks/single_node/glm5_fp8_h200.sh at ebb48d4bc (2026-03-18, which added it with image "
        f"lmsysorg/sglang:glm5-hopper; its rows were measured on 2026-03-19): sglang.launch_server "
        f"--mem-fraction-static 0.85 and no other scheduling or --kv-cache-dtype flag ({_AUTO_KV})",
        versions=("glm5-hopper",), kv_dtype="bf16"),
    ServerScript(
        "trtllm", "deepseek-v3", "h200_sxm", "1.1.0rc2.post2",
        {"token_budget": lambda isl, osl, tp, c: (c + isl + 64 + 63) // 64 * 64,
         "cuda_graph_sizes": trtllm_padded_graph_sizes(128), "cuda_graph_padding": True, "memory_fraction": 0.75},
        f"{_INFERENCEX} benchmarks/dsr1_fp8_h200_trt_slurm.sh at f6a9d0b6a (2025-12-15, the day its DeepSeek-V3 "
        f"rows were measured; the same flags at e06929c70, 2025-11-02, for the rows that record no version, image "
        f"release:1.1.0rc2.post2 in dsr1-tmpl.yml, and at 008b91a9d, 2026-01-14, when most DeepSeek-R1 rows were; "
        f"image release:1.1.0rc2.post2): trtllm-serve --max_num_tokens (CONC + ISL + 64 + 63) / 64 x 64 (2 R1 rows of "
        f"2026-01-28 ran it with a floor of 8192), no --max_batch_size (default 2048), cuda_graph_config "
        f"enable_padding true max_batch_size 128, kv_cache_config dtype fp8 free_gpu_memory_fraction 0.75 "
        f"enable_block_reuse false, stream_interval 10, moe_config backend CUTLASS (not modelled)",
        versions=("1.1.0rc2.post2", ""), kv_dtype="fp8_e4m3",
        defaults=("max_seqs", "chunked_prefill", "overlap_scheduling")),
    ServerScript(
        "trtllm", "gpt-oss-120b", "h200_sxm", "gpt-oss-dev",
        {"max_seqs": "$CONC", "token_budget": 20000, "memory_fraction": 0.85, "cuda_graph_padding": True,
         "cuda_graph_sizes": lambda isl, osl, tp, c: trtllm_padded_graph_sizes(c)},
        f"{_INFERENCEX} benchmarks/gptoss_fp4_h200_trt_slurm.sh at f6a9d0b6a (2025-12-15, the day its rows were "
        f"measured; the same flags at e06929c70, 2025-11-02, for the rows that record no version; image "
        f"release:gpt-oss-dev in gptoss-tmpl.yml both days): trtllm-serve --max_batch_size $CONC --max_num_tokens 20000, "
        f"cuda_graph_config enable_padding true max_batch_size $CONC, kv_cache_config dtype auto "
        f"free_gpu_memory_fraction 0.85 enable_block_reuse false, stream_interval 20, moe_config backend TRITON "
        f"(not modelled)",
        versions=("gpt-oss-dev", ""), kv_dtype="bf16", defaults=("chunked_prefill", "overlap_scheduling")),
)
"""The InferenceMAX scripts read so far; rows of other scripts keep the --deployment recipe's engine settings."""


def inferencemax_script(eng: str, model: str, system: str, version: str = "") -> ServerScript | None:
    """The script that measured InferenceMAX rows of this engine, model, system and recorded release, if it was
    read."""
    for sc in INFERENCEMAX_SCRIPTS:
        if (sc.engine, sc.model, sc.system) == (eng, model, system) and version in sc.versions:
            return sc
    return None


def row_client(row, choice: str) -> str:
    """The workflow a row was measured with: ``choice`` unless it is ``auto``; then ``inferencemax`` when the row's
    ``silicon_data_source`` (the provenance column newer silicon_sample.csv files carry) comes from InferenceMAX's
    results (a ``wip=`` field, or a ``db-dump/`` export), else ``aiconfigurator``.  Why those markers: such rows name
    the workflow's own images (``nvcr.io#nvidia/tensorrt-llm/release:gpt-oss-dev`` and ``...:1.1.0rc2.post2``, the
    '#' spelling of InferenceMAX's .github/configs/nvidia-master.yaml for gptoss-fp4-h200-trt and dsr1-fp8-h200-trt),
    and every one of them (4250 in aiconfigurator 095f58a51's file) is one of the workflow's three shapes, 1024x1024,
    1024x8192 and 8192x1024.  A file without the column (the serving-dev rows) is aiconfigurator's own workflow."""
    if choice != "auto":
        return choice
    src = str(row.get("silicon_data_source") or "")
    if src.startswith("db-dump/") or re.search(r"(?:^|;\s*)wip=", src):
        return "inferencemax"
    return "aiconfigurator"


def concurrency_recorded(row) -> bool:
    """False where the row says its benchmark concurrency was not recorded: its id's concurrency field is empty
    (``..._4000x1000_c_tp2_...``, where every other published id spells it, ``_c16_``) and its provenance, where the
    file has that column, names no ``silicon_concurrency``.  ``batch_size`` need not be the concurrency (upstream's
    rows with attention DP record batch_size = concurrency / attention_dp_size), so for such rows the load
    predicted is a reading of batch_size, not a recorded one; the summary keeps them apart (a group of their own,
    and the targets over the other rows too)."""
    if re.search(r"silicon_concurrency=\d+", str(row.get("silicon_data_source") or "")):
        return True
    return not re.search(r"_c_", str(row.get("id") or ""))


def row_model(row, spec: str | None, cache: dict):
    """(ModelConfig, None) for a row, or (None, why not): --model for every row, else the preset citing the
    row's ``model_path`` (its Hugging Face id); rows without that column are Qwen3-32B (the development set)."""
    from accelcal.models import preset_for_hf_id

    key = spec or str(row.get("model_path", "Qwen/Qwen3-32B"))
    if key not in cache:
        if spec:
            cache[key] = (ModelConfig.resolve(spec), None)
        else:
            name = preset_for_hf_id(key)
            cache[key] = ((ModelConfig.from_name(name), None) if name else
                          (None, f"model {key}: no preset cites it (pass --model PATH to its config.json)"))
    return cache[key]


class RowLayout(NamedTuple):
    """How a published row's layout reads: a replica's degrees, and whether its ``batch_size`` is one rank's."""

    tp: int
    pp: int
    dp: int
    ep: int
    moe_tp: int
    """predict_serving's ``moe_tp``: every expert TP-split over this many devices of several replicas (0: none)."""
    batch_per_rank: bool
    """``batch_size`` is one attention data-parallel rank's (concurrency = batch_size x dp): rows recording
    ``attention_dp_size``; otherwise it is the benchmark's concurrency."""
    why: str | None
    """Why the row is not read (None: it is)."""


def row_layout(row) -> RowLayout:
    """A published row's layout: experts TP-split (ep 1), spread over the TP group (ep = tp), over the attention
    data-parallel ranks' TP groups (ep = tp x attention_dp_size, dp = attention_dp_size: one engine instance of
    dp x tp devices whose attention runs data-parallel), or TP-split over more devices than attention's TP group
    (moe_tp_size = tp x k with no EP: k attention-DP replicas share the expert layers, vLLM's default for
    data-parallel MoE; the row may leave attention_dp_size empty)."""
    def num(col: str, default: int) -> int:
        v = row.get(col)
        return default if v is None or pd.isna(v) or int(v) == 0 else int(v)
    tp, pp = num("tp_size", 1), num("pp_size", 1)
    adp, moe_tp, moe_ep = num("attention_dp_size", 1), num("moe_tp_size", tp), num("moe_ep_size", 1)

    def no(why: str) -> RowLayout:
        return RowLayout(tp, pp, 1, 1, 0, False, why)

    if adp > 1 and moe_tp == 1 and moe_ep == tp * adp:
        return RowLayout(tp, pp, adp, moe_ep, 0, True, None)
    if moe_ep == 1 and moe_tp > tp and moe_tp % tp == 0 and adp in (1, moe_tp // tp):
        # the experts TP-split over moe_tp_size devices, attention TP over tp_size of them: k = moe_tp / tp
        # attention data-parallel replicas share the expert layers
        return RowLayout(tp, pp, moe_tp // tp, 1, moe_tp, adp > 1, None)
    if adp > 1:
        return no(f"attention DP {adp} with experts over TP{moe_tp} x EP{moe_ep} is not modelled (EP over the "
                  f"{tp * adp} devices of attention TP{tp} x DP{adp}, or every expert TP-split over them, is)")
    if moe_tp * moe_ep > tp:
        return no(f"experts over TP{moe_tp} x EP{moe_ep} = {moe_tp * moe_ep} devices with attention TP{tp}: attention "
                  f"DP {moe_tp * moe_ep // tp} with EP and no attention_dp_size is not modelled")
    if moe_ep > 1 and moe_tp > 1:
        # accelcal models this split (--tp T --ep E, E dividing T), but the published rows that record one do not
        # describe it: in every such row of aiconfigurator 095f58a51's silicon_sample.csv (TP4 = 2 x 2, TP16 =
        # 4 x 4, TP64 = 8 x 8) the id names TP = moe_tp_size with EP = moe_ep_size (e.g. ..._tp2_ep2_992 in a row of
        # tp_size 4), and the TPOTs equal those of the id's layout, so tp_size reads as their product
        return no(f"experts split TP{moe_tp} x EP{moe_ep} inside TP{tp}: not read as a layout (the published rows "
                  f"recording one name another in their ids; benchmarks/serving_accuracy.py row_layout)")
    if moe_ep > 1 and moe_ep != tp:
        return no(f"whole experts over EP{moe_ep}, {moe_ep} of TP{tp}'s devices, is not read as a layout (EP fills "
                  f"the TP group, or attention runs data-parallel)")
    return RowLayout(tp, pp, 1, moe_ep, 0, False, None)


def repo_path(path: str) -> str:
    """``path`` as given where it exists or is absolute, else relative to the repository (the shipped profiles)."""
    return path if Path(path).is_absolute() or Path(path).exists() else str(ROOT / path)


class ProfileChooser:
    """(device profile, interconnect, inter-node profile) for a row's system, loaded once each; notes printed once."""

    def __init__(self, args) -> None:
        self.args = args
        self.cache: dict = {}
        self.loaded: dict = {}

    def load(self, path: str):
        """The profile at ``path`` (repo_path), read once however many systems and checks ask for it."""
        if path not in self.loaded:
            self.loaded[path] = Profile.load(repo_path(path))
        return self.loaded[path]

    def __call__(self, system: str):
        a = self.args
        dev = a.profile or SYSTEM_PROFILES.get(system)
        if dev is None:
            return None, f"system {system!r}: no measured profile ships for it (pass --profile)"
        ic_path, stand_in = (a.interconnect, None) if a.interconnect else SYSTEM_INTERCONNECTS.get(system, (None, None))
        if ic_path == "none":
            ic_path, stand_in = None, None
        key = (dev, ic_path)
        if key not in self.cache:
            prof = self.load(dev)
            ic = self.load(ic_path) if ic_path else None
            inter = self.load(a.inter_node_profile) if a.inter_node_profile else None
            combined, inter, notes = combine_profiles(prof, ic, inter)
            for n in notes:
                print(f"note: {n}")
            if stand_in:
                print(f"note: {stand_in}")
            self.cache[key] = (combined, ic, inter)
        return self.cache[key], None


def summary(label: str, err_ttft: list[float], err_tpot: list[float]) -> str:
    if not err_ttft:
        return f"{label:<22} n=0"
    a, b = np.abs(err_ttft), np.abs(err_tpot)
    return (f"{label:<22} n={len(a):<4} TTFT |rel err| mean {a.mean():7.1%} median {np.median(a):7.1%}   "
            f"TPOT |rel err| mean {b.mean():7.1%} median {np.median(b):7.1%}")


def verdict(err_ttft: list[float], err_tpot: list[float], infeasible: int) -> str:
    """The issue's three targets, each with its unrounded figure and met / missed."""
    def one(name: str, errs: list[float], target: float) -> str:
        if not errs:
            return f"{name} mean <= {target:.0%}: no rows"
        v = float(np.mean(np.abs(errs)))
        return f"{name} mean {v:.2%} <= {target:.0%}: {'met' if v <= target else 'missed'}"
    return (f"{one('TPOT', err_tpot, 0.10)}, {one('TTFT', err_ttft, 0.20)}, {infeasible} row(s) called infeasible: "
            f"{'met' if infeasible == 0 else 'missed'}")


def run_rows(df: pd.DataFrame, args, turnaround_s: float, rows: bool,
             client_gap_s: float = 0.0, records: list | None = None) -> tuple[dict, Counter, list, dict, dict]:
    """Predict every row of ``df`` (as main reads it: the text columns as text, empty cells ""); ``records``, when
    given, gets one dict per predicted row (the --out CSV's)."""
    errs = defaultdict(lambda: ([], []))
    skipped: Counter = Counter()
    scripted: Counter = Counter()  # InferenceMAX script whose server flags a row took -> rows
    infeasible = []
    in_prefills = defaultdict(lambda: ([], []))  # (engine, concurrency, isl) -> (measured, predicted) TTFT / one prefill
    tpots: dict = defaultdict(dict)  # (engine, tp, concurrency, isl) -> {osl: (measured, predicted) TPOT, then TTFT}
    costers: dict = {}
    models: dict = {}
    # stderr: a terminal bar, or in a log a line every 30 s and one when the rows are done
    bar = StageProgress("serving_accuracy", log_every_s=30.0)
    bar.start(f"rows (turnaround {turnaround_s * 1e3:g} ms, client gap {client_gap_s * 1e3:g} ms)", len(df))
    for _, row in df.iterrows():
        bar.advance(str(row.get("id", "")))
        eng = ENGINES.get(row["backend"])
        if eng is None:
            skipped[f"backend {row['backend']!r} has no engine preset"] += 1
            continue
        if str(row.get("mode", "agg")) != "agg":
            skipped[f"mode {row['mode']!r}: prefill and decode on separate workers are not modelled"] += 1
            continue
        model, why = row_model(row, args.model, models)
        if model is None:
            skipped[why] += 1
            continue
        lay = row_layout(row)
        if lay.why:
            skipped[lay.why] += 1
            continue
        tp, pp, dp, ep, moe_tp = lay.tp, lay.pp, lay.dp, lay.ep, lay.moe_tp
        if not model.is_moe:
            ep, moe_tp = 1, 0  # a dense model's row: its expert columns say nothing (its DP replicas are apart)
        precision = row.get("precision") or ""
        own = {"fp4": "mxfp4", "int4": "int4_g"}.get(precision)
        if own and model.expert_weight_dtype.startswith(own):
            # the checkpoint's own 4-bit experts (gpt-oss: mxfp4, the file labels its rows fp4 / nvfp4; Kimi-K2.5:
            # int4, rows precision int4, gemm_quant_mode int4_wo): the model as published, its other weights in the
            # activation dtype
            precision = ""
        if precision not in ("", "bf16", "fp16", "fp8"):
            skipped[f"precision {precision!r} (weights) is not modelled"] += 1
            continue
        profs, why = args.profiles_for(str(row.get("system", "h100_sxm")))
        if profs is None:
            skipped[why] += 1
            continue
        prof, ic, inter = profs
        if tp * pp > 1 and ic is None:
            skipped[f"TP{tp} PP{pp}: needs --interconnect (the device profile has no collectives)"] += 1
            continue
        fp8 = precision == "fp8"
        # aiconfigurator's fp8_block: 128-wide blocks
        # block-scaled where the row says so of its GEMMs or its experts (the sglang DeepSeek-R1/V3, GLM-5 and
        # Qwen3.5 rows record gemm_quant_mode fp8 but moe_quant_mode fp8_block: their experts, which an engine's MoE
        # op table answers for, are block-scaled, as the checkpoints' quantization configs say)
        modes = (row.get("gemm_quant_mode") or "") + " " + (row.get("moe_quant_mode") or "")
        scaling = "block" if fp8 and "block" in modes else "per_tensor"
        try:
            bs, isl, osl = int(row["batch_size"]), int(row["isl"]), int(row["osl"])
            mt, mp = float(row["silicon_ttft_ms"]) / 1e3, float(row["silicon_tpot_ms"]) / 1e3
            if min(bs, isl, osl) < 1 or not (mt > 0 and mp > 0):
                raise ValueError
        except (TypeError, ValueError):
            skipped["batch_size, isl, osl >= 1 and measured TTFT, TPOT > 0 needed (a value is missing or out of range)"] += 1
            continue
        # a row with attention DP records the batch of one attention-DP rank: the benchmark's concurrency is
        # batch_size x attention_dp_size (every such published row whose provenance records silicon_concurrency
        # says so), and the generator's batch size, which the deployment recipe reads, is the rank's
        c = bs * dp if lay.batch_per_rank else bs
        wd = "fp8_e4m3" if fp8 else "bf16"
        client = row_client(row, args.client)
        script = (inferencemax_script(eng, model.name, str(row.get("system", "")), str(row["backend_version"]))
                  if client == "inferencemax" and not args.no_script_flags else None)
        version = str(row["backend_version"] or (script.image_version if script else ""))
        engine, kvd, _ = apply_deployment(args.deployment, EnginePreset.from_name(eng), version,
                                          isl, osl, bs, wd, args.fp8_kv_dtype if fp8 else "bf16", profile=prof)
        if script:
            own = script.for_row(isl, osl, tp, c)
            if script.defaults:
                plain, _, _ = apply_deployment("default", EnginePreset.from_name(eng), version, isl, osl, bs, wd,
                                               profile=prof)
                own.update({k: getattr(plain, k) for k in script.defaults})
            own = {k: v for k, v in own.items() if k not in args.overrides}
            engine = engine.with_overrides(own, script.source)
            kvd = script.kv_dtype or kvd
            scripted[script.source] += 1
        engine = engine.with_overrides(args.overrides, "--engine-arg (this benchmark run)")
        balance = INFERENCEMAX.trtllm_attention_dp_balance_iters
        if (client == "inferencemax" and eng == "trtllm" and lay.batch_per_rank
                and "attention_dp_balance_iters" not in args.overrides):
            # the scripts' attention-DP balance (InferenceMaxClient.trtllm_attention_dp_balance_iters)
            engine = engine.with_overrides({"attention_dp_balance_iters": balance},
                                           f"InferenceMAX TensorRT-LLM scripts: attention_dp_config enable_balance, "
                                           f"timeout_iters {balance} with attention DP")
        spread = {}
        if client == "inferencemax":
            n, warm = INFERENCEMAX.prompts_per_client * c, 0
            spread = {"range_ratio": INFERENCEMAX.range_ratio, "range_mode": INFERENCEMAX.range_mode}
        elif args.deployment == "aiconfigurator":
            n, warm = args.requests_per_client * c, args.warmup_per_client * c
        else:
            n, warm = (args.requests_per_client * c if args.requests_per_client else args.num_requests), 0
        dev = str(prof.identity.device_name)
        tables = [t for t in args.moe_tables if t.engine == engine.name and same_device_model(t.device, dev)]
        try:
            res = predict_serving(prof, model, engine, tp=tp, pp=pp, dp=dp, ep=ep, moe_tp=moe_tp, concurrency=c,
                                  isl=isl, osl=osl,
                                  num_requests=n,
                                  weight_dtype=wd, kv_dtype=kvd, inter_node_profile=inter, method=args.method,
                                  turnaround_s=turnaround_s, client_gap_s=client_gap_s, warmup_requests=warm,
                                  warmup_drains=args.deployment == "aiconfigurator" and not args.no_warmup_drain,
                                  fp8_scaling=scaling, moe_tables=tables, **spread)
        except (StepCostError, ValueError) as exc:
            skipped[f"{model.name} TP{tp}{f' DP{dp}' if dp > 1 else ''}{f' EP{ep}' if ep > 1 else ''}: "
                    f"{str(exc)[:160]}"] += 1
            continue
        if not res.feasible:
            infeasible.append((row["id"], res.reason))
            continue
        key = (eng, tp, dp, ep, moe_tp, wd, scaling, model.name, prof.identity.name)
        if key not in costers:
            costers[key] = StepCoster(prof, model, replica_parallelism(tp, pp, dp, int(prof.identity.devices_per_node),
                                                                       ep, model.num_experts, moe_tp),
                                      engine, wd, kvd, inter, fp8_scaling=scaling,
                                      moe_table=tables[0] if tables else None)
        one = costers[key].step_s(0, 0.0, ((isl, isl),))
        # rows of two workflows never pool in one diagnostic cell: their clients send different loads
        label = f"{eng} {client}" if args.multi_client else eng
        in_prefills[(label, c, isl)][0].append(mt / one)
        in_prefills[(label, c, isl)][1].append(res.metrics.ttft_mean_s / one)
        group = (f"{label} {model.name}" if args.multi_model else label, tp, c, isl)
        tpots[group][osl] = (mp, res.metrics.tpot_mean_s, mt, res.metrics.ttft_mean_s)
        et = res.metrics.ttft_mean_s / mt - 1
        e_tpot = res.metrics.tpot_mean_s / mp - 1
        groups = ["all", f"engine {eng} {version or '(no version: newest rules)'}", f"TP{tp}"]
        if args.multi_model:
            groups.append(f"model {model.name}")
        if args.multi_system:
            groups.append(f"system {row['system']}")
        if args.multi_client:
            groups.append(f"client {client}")
        if args.unrecorded:
            groups.append("concurrency recorded" if concurrency_recorded(row)
                          else "concurrency not recorded (batch_size read as it)")
        for key in groups:
            errs[key][0].append(et)
            errs[key][1].append(e_tpot)
        if records is not None:
            records.append({
                "id": row.get("id", ""), "backend": eng, "backend_version": row["backend_version"],
                "model": model.name, "moe": bool(model.is_moe), "system": row.get("system", ""), "client": client,
                "tp": tp, "pp": pp, "dp": dp, "ep": ep, "moe_tp": moe_tp, "weight_dtype": wd, "kv_dtype": kvd,
                "concurrency": c, "isl": isl,
                "osl": osl, "ttft_measured_s": mt, "ttft_predicted_s": res.metrics.ttft_mean_s,
                "tpot_measured_s": mp, "tpot_predicted_s": res.metrics.tpot_mean_s, "ttft_rel_err": et,
                "tpot_rel_err": e_tpot, "one_prefill_s": one})
        if rows:
            print(f"  {str(row.get('id', ''))[-48:]:<48} {eng:<7} c{c:<4} {isl}x{osl} "
                  f"TTFT {res.metrics.ttft_mean_s * 1e3:9.1f} vs {mt * 1e3:9.1f} ms ({et:+.0%})  TPOT "
                  f"{res.metrics.tpot_mean_s * 1e3:7.2f} vs {mp * 1e3:7.2f} ms ({e_tpot:+.0%})")
    bar.close()
    for source, k in scripted.items():
        print(f"server flags of an InferenceMAX script on {k} row(s) (--no-script-flags leaves them out): {source}")
    return errs, skipped, infeasible, in_prefills, tpots


def _decode_and_interference(by_osl: dict, c: int, j: int) -> tuple[float, float]:
    """(D, dP) of TPOT(osl) ~ D + (c / osl) dP through the shortest and longest output lengths; ``j`` 0 for the
    measured TPOT, 1 for the predicted one (the values of ``by_osl``: (measured, predicted, ...))."""
    lo, hi = min(by_osl), max(by_osl)
    x_lo, x_hi = c / lo, c / hi
    dp = (by_osl[lo][j] - by_osl[hi][j]) / (x_lo - x_hi)
    return by_osl[lo][j] - x_lo * dp, dp


def split_tpot(tpots: dict) -> dict:
    """Decode step and prefill interference, measured vs predicted, from TPOT pairs at two output lengths.

    In a closed loop of c requests each output token's time is about a decode-only step D plus the share of
    prefill work mixed in: each request's prompt is prefilled once per osl tokens of its c neighbours, so
    TPOT(osl) ~ D + (c / osl) dP.  Two rows that differ only in osl give D and dP, for the measurements and
    for the predictions alike; their ratios say which of the two a TPOT miss comes from.  Returns
    (engine, tp) -> [(concurrency, D measured, D predicted, dP measured, dP predicted), ...] in seconds, each
    tuple followed by (TTFT / dP measured, TTFT / dP predicted) when the rows carry TTFT too (mean over the
    output lengths): TTFT in prefills of the engine's own step, measured and predicted, so a TTFT miss that
    remains in these units is the queue a request meets, not the cost of a prefill."""
    out = defaultdict(list)
    for (eng, tp, c, _), by_osl in sorted(tpots.items()):
        if len(by_osl) < 2:
            continue
        (d_m, dp_m), (d_p, dp_p) = (_decode_and_interference(by_osl, c, j) for j in (0, 1))
        if d_m > 0 and dp_m > 0:
            row = (c, d_m, d_p, dp_m, dp_p)
            if dp_p > 0 and all(len(v) >= 4 for v in by_osl.values()):
                row += (float(np.mean([v[2] for v in by_osl.values()])) / dp_m,
                        float(np.mean([v[3] for v in by_osl.values()])) / dp_p)
            out[(eng, tp)].append(row)
    return out


def prefill_exposure(tpots: dict) -> dict:
    """The prefill work one request lives through, measured vs predicted, wherever the queue puts it.

    A request of a closed loop of c meets prefill work twice: before its first token (its own prefill and the
    queue ahead of it: TTFT) and while it decodes (its neighbours' prefills: (osl - 1)(TPOT - D) ~ c dP, from the
    same two-output-length split as :func:`split_tpot`).  Their sum E = TTFT + c dP does not depend on how an
    engine's scheduler splits the work between the two, and with every one of the c prompts prefilled once per
    request lifetime, (E measured - E predicted) / c is what one prefill costs the engine beyond the
    prediction.  Returns (engine, tp) -> [(isl, concurrency, E measured, E predicted), ...] in seconds."""
    out = defaultdict(list)
    for (eng, tp, c, isl), by_osl in sorted(tpots.items()):
        if len(by_osl) < 2 or not all(len(v) >= 4 for v in by_osl.values()):
            continue
        (_, dp_m), (_, dp_p) = (_decode_and_interference(by_osl, c, j) for j in (0, 1))
        ttft_m, ttft_p = (float(np.mean([v[k] for v in by_osl.values()])) for k in (2, 3))
        if dp_m > 0 and dp_p > 0:
            out[(eng, tp)].append((isl, c, ttft_m + c * dp_m, ttft_p + c * dp_p))
    return out


def ttft_lifetime_slope(tpots: dict) -> dict:
    """How TTFT grows with the time a request runs, measured vs predicted, from rows that differ only in osl.

    A request's lifetime after its first token is about (osl - 1) x TPOT.  When a new request can start only as a
    running one finishes (one client more than the engine runs at once), it waits for the next of the c - 1
    running requests' finishes, spread over a lifetime: TTFT grows by 1/c to 1/(c - 1) of the lifetime.  A
    queue of prefills alone does not grow with osl.  The slope dTTFT / d(osl x TPOT) between the shortest and
    longest osl, on each side, tells the two apart.  Returns (engine, tp) -> [(concurrency, slope measured, slope predicted), ...]."""
    out = defaultdict(list)
    for (eng, tp, c, _), by_osl in sorted(tpots.items()):
        if len(by_osl) < 2 or not all(len(v) >= 4 for v in by_osl.values()):
            continue
        lo, hi = min(by_osl), max(by_osl)
        slopes = []
        for tpot_j, ttft_j in ((0, 2), (1, 3)):
            span = hi * by_osl[hi][tpot_j] - lo * by_osl[lo][tpot_j]
            slopes.append((by_osl[hi][ttft_j] - by_osl[lo][ttft_j]) / span if span > 0 else float("nan"))
        if all(np.isfinite(slopes)):
            out[(eng, tp)].append((c, *slopes))
    return out


def decode_excess(split: dict) -> dict:
    """How far the measured decode step D lies beyond the predicted one, and how that grows with the batch.

    From :func:`split_tpot`'s D at each concurrency (median over prompt lengths): D measured - D predicted, and its
    least-squares line over the concurrencies, excess ~ a + b c.  A cost the prediction lacks that every running
    sequence adds to a step (host work per request, a per-sequence kernel cost) reads as a steady slope b; a
    missing cost per step, as the intercept a.  Returns (engine, tp) -> (b in s per sequence, a in s,
    [(concurrency, excess s), ...]) for layouts with two concurrencies or more."""
    out = {}
    for layout, parts in split.items():
        by_c: dict = defaultdict(list)
        for p in parts:
            by_c[p[0]].append(p[1] - p[2])
        cs = sorted(by_c)
        if len(cs) < 2:
            continue
        ex = [float(np.median(by_c[c])) for c in cs]
        b, a = np.polyfit(np.array(cs, dtype=float), np.array(ex), 1)
        out[layout] = (float(b), float(a), list(zip(cs, ex)))
    return out


def light_load_excess(tpots: dict) -> dict:
    """TTFT beyond the prediction at each layout's lightest load, by prompt length.

    At the lowest concurrency of a layout the queue is shortest, so what TTFT measures beyond the prediction there
    is mostly the price of the request's own prefill and the path around it.  A prefill dearer than predicted
    grows with the prompt; a per-request cost outside the engine step (client, server front end, request
    hand-off) does not.  Returns (engine, tp) -> (concurrency, [(isl, measured - predicted s, measured /
    predicted), ...]), each the mean over the output lengths of that prompt length's rows."""
    lowest: dict = {}
    for (eng, tp, c, _) in tpots:
        lowest[(eng, tp)] = min(c, lowest.get((eng, tp), c))
    out = {}
    for (eng, tp), c in lowest.items():
        cells = []
        for (e, t, cc, isl), by_osl in sorted(tpots.items()):
            if (e, t, cc) != (eng, tp, c) or not all(len(v) >= 4 for v in by_osl.values()):
                continue
            m = float(np.mean([v[2] for v in by_osl.values()]))
            p = float(np.mean([v[3] for v in by_osl.values()]))
            if p > 0:
                cells.append((isl, m - p, m / p))
        if cells:
            out[(eng, tp)] = (c, cells)
    return out


def ttft_in_prefills(in_prefills: dict, by_prompt: bool = False) -> dict:
    """TTFT in units of one prompt's predicted prefill step, ``c{concurrency} measured/predicted`` (medians over the
    rows), per engine, or with ``by_prompt`` per (engine, prompt length). ``in_prefills``: (engine, concurrency,
    isl) -> (measured, predicted) lists. Split by prompt length, a queue that is right at one length and not at the
    next shows, e.g. where the token budget fits two prompts a step at one length and one at the next."""
    items: dict = defaultdict(list)
    for (eng, c, isl), (meas, pred) in in_prefills.items():
        items[(eng, isl) if by_prompt else eng] += [(c, a, b) for a, b in zip(meas, pred)]
    return {k: by_concurrency(v, ".1f") for k, v in items.items()}


def print_by_layout(title: str, cells: dict) -> None:
    """``title``, then one line per (engine, TP) of ``cells`` (its text), in order; nothing when ``cells`` is empty."""
    if cells:
        print(title)
        for (eng, tp), text in sorted(cells.items()):
            print(f"  {eng:<7} TP{tp:<2} {text}")


def by_concurrency(items: list[tuple[int, float, float]], fmt: str) -> str:
    """``c{concurrency} measured/predicted`` cells, the medians of each concurrency's (measured, predicted) values."""
    by_c: dict = defaultdict(list)
    for c, a, b in items:
        by_c[c].append((a, b))
    return "  ".join(f"c{c} {np.median([a for a, _ in v]):{fmt}}/{np.median([b for _, b in v]):{fmt}}"
                     for c, v in sorted(by_c.items()))


def main() -> int:
    ap = argparse.ArgumentParser(description="accelcal's engine model against published end-to-end serving "
                                             "measurements (by default the development rows, Qwen3-32B on H100 SXM)")
    dev_rows = ROOT.parent / "shared/data/serving-dev/qwen3-32b-h100.csv"
    ap.add_argument("--data", default=str(dev_rows),
                    help=f"published rows, aiconfigurator's silicon-sample columns (default: {dev_rows}, the "
                         f"development set beside the repository)")
    ap.add_argument("--profile", default=None,
                    help="device profile for every row (default: by the row's system column, "
                         + ", ".join(f"{k} -> {v}" for k, v in SYSTEM_PROFILES.items()) + "; other systems: not predicted)")
    ap.add_argument("--interconnect", default=None,
                    help="intra-node interconnect profile for the TP>1 rows (default: the shipped H100 NVSwitch "
                         "profile, published nccl-tests, for h100_sxm and h200_sxm rows; 'none': TP=1 rows only)")
    ap.add_argument("--inter-node-profile", default=None)
    ap.add_argument("--model", default=None,
                    help="model for every row: a preset name, config .yaml or Hugging Face config.json (default: the "
                         "preset citing the row's model_path, e.g. Qwen/Qwen3-32B -> qwen3-32b; rows of models no "
                         "preset cites are not predicted)")
    ap.add_argument("--deployment", choices=DEPLOYMENTS, default="aiconfigurator",
                    help="engine settings: 'aiconfigurator' (the default), the recipe the published rows were run "
                         "with; 'default', the engines' own defaults")
    ap.add_argument("--fp8-kv-dtype", choices=("bf16", "fp8_e4m3"), default="bf16",
                    help="KV dtype for the fp8 rows when the deployment recipe does not set one (--deployment default)")
    ap.add_argument("--num-requests", type=int, default=None,
                    help="--deployment default: requests per point (default: the predictor's)")
    ap.add_argument("--requests-per-client", type=int, default=None,
                    help="requests per point = this x concurrency (default 10 with --deployment aiconfigurator: "
                         "aiconfigurator's automated evaluation, eval/benchmarks/genai_perf_runner.py "
                         "'--request-count v * 10' from 961028348 until c0c44d911; its later generated "
                         "bench_run.sh.j2 sends 20)")
    ap.add_argument("--warmup-per-client", type=int, default=2,
                    help="--deployment aiconfigurator: warm-up requests = this x concurrency (genai_perf_runner.py and "
                         "bench_run.sh.j2: 2)")
    ap.add_argument("--turnaround-ms", default=None,
                    help="client turnaround bound(s) in ms, comma-separated for a sensitivity table "
                         f"(default: the workload's {ServingWorkload.turnaround_s * 1e3:g} ms)")
    ap.add_argument("--client-gap-ms", default="0",
                    help="closed-loop client pause(s) between a response and the next request, ms, comma-separated "
                         "for a sensitivity table (outside TTFT; default 0)")
    ap.add_argument("--method", choices=("simulate", "steady"), default="simulate",
                    help="step-level simulation (default) or the analytic steady state")
    ap.add_argument("--engine-arg", action="append", default=[], metavar="KEY=VALUE",
                    help="override one engine preset key on every row after the deployment recipe (an ablation, "
                         "e.g. overlap_scheduling=false or tp_all_reduce_kernel=); repeatable")
    ap.add_argument("--no-warmup-drain", action="store_true",
                    help="--deployment aiconfigurator: run the measured requests straight after the warm-up in one "
                         "loop instead of aiperf's drained warm-up and fresh burst (an ablation)")
    ap.add_argument("--no-script-flags", action="store_true",
                    help="InferenceMAX rows keep the --deployment recipe's engine settings instead of taking the "
                         "server flags their benchmark script gives (INFERENCEMAX_SCRIPTS: the scripts read so far; "
                         "an ablation)")
    ap.add_argument("--client", choices=CLIENTS, default="auto",
                    help="the benchmark workflow the rows were measured with: 'aiconfigurator' (genai-perf/aiperf, "
                         "fixed lengths, the counts above), 'inferencemax' (benchmark_serving.py, lengths uniform in "
                         f"{INFERENCEMAX.range_ratio:g} x .. x, {INFERENCEMAX.prompts_per_client} x concurrency "
                         "prompts, whatever --num-requests / --requests-per-client / --warmup-per-client say; "
                         "the engine settings stay --deployment's), or 'auto' (default): by each row's "
                         "silicon_data_source where the file has that column, else aiconfigurator")
    ap.add_argument("--moe-table", action="append", default=[], metavar="FILE",
                    help="a published table of an engine's MoE op (accelcal import moe-table; shipped: "
                         "profiles/engine-kernels/*.yaml): a MoE row of that engine on that table's device takes its "
                         "routed experts' time from it (repeatable; at most one per engine and device)")
    ap.add_argument("--rows", action="store_true", help="print every row's prediction")
    ap.add_argument("--out", default=None, metavar="CSV",
                    help="write every predicted row (its id, layout, load, measured and predicted TTFT and TPOT, "
                         "signed relative errors, one prompt's predicted prefill step) to this CSV; with several "
                         "--turnaround-ms / --client-gap-ms values, the last sweep's")
    args = ap.parse_args()
    from accelcal.planner.serving.cli import parse_engine_args

    try:
        args.overrides = parse_engine_args(args.engine_arg)
        EnginePreset.from_name("vllm").with_overrides(args.overrides, "--engine-arg")
    except ValueError as exc:
        ap.error(f"--engine-arg: {exc}")
    if args.requests_per_client is None and args.deployment == "aiconfigurator":
        args.requests_per_client = 10
    try:
        turnarounds = ([float(x) / 1e3 for x in args.turnaround_ms.split(",")] if args.turnaround_ms
                       else [ServingWorkload.turnaround_s])
        gaps = [float(x) / 1e3 for x in str(args.client_gap_ms).split(",")]
    except ValueError:
        ap.error(f"--client-gap-ms / --turnaround-ms: comma-separated numbers of ms expected, got "
                 f"{args.client_gap_ms!r} / {args.turnaround_ms!r}")
    sweeps = [(ta, gap) for ta in turnarounds for gap in gaps]
    if args.out:
        try:
            check_file(args.out, what="--out")  # before minutes of predictions, not after them
        except DestinationError as exc:
            ap.error(str(exc))
    args.profiles_for = ProfileChooser(args)
    loaded = {}
    for opt, path in (("--profile", args.profile), ("--inter-node-profile", args.inter_node_profile),
                      ("--interconnect", None if args.interconnect == "none" else args.interconnect)):
        if path:
            try:
                loaded[opt] = args.profiles_for.load(path)
            except (OSError, ValueError) as exc:
                ap.error(f"{opt} {path}: {exc}")
    try:
        args.moe_tables = load_moe_tables(args.moe_table)
    except (OSError, ValueError) as exc:
        ap.error(str(exc))
    seen_tables: dict = {}
    for t in args.moe_tables:
        key = (t.engine, t.device)
        if key in seen_tables:
            ap.error(f"--moe-table: {seen_tables[key]} and {t.origin} are both {t.engine} on {t.device}; give one")
        seen_tables[key] = t.origin
    if "--profile" in loaded:
        try:  # the kinds checked here (a device profile, then interconnects), not at the first row
            combine_profiles(loaded["--profile"], loaded.get("--interconnect"), loaded.get("--inter-node-profile"))
        except ValueError as exc:
            ap.error(str(exc))
    # text columns stay text ("1.0" is not 1.0) and an empty cell is "": an empty version means the engine's
    # newest rules (deployment.py), not pandas' NaN, which would read as the oldest
    text = ("backend_version", "precision", "gemm_quant_mode", "moe_quant_mode")
    try:
        df = pd.read_csv(args.data, dtype=dict.fromkeys(text, str))
    except FileNotFoundError:
        ap.error(f"--data {args.data}: no such file (the development rows live in ../shared/data/serving-dev/ "
                 f"beside the repository; pass --data CSV for others)")
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        ap.error(f"--data {args.data}: cannot read it as a CSV: {exc}")
    for col in text:
        if col in df:
            df[col] = df[col].fillna("").str.strip()
    need = {"backend", "backend_version", "isl", "osl", "batch_size", "tp_size", "silicon_ttft_ms", "silicon_tpot_ms"}
    if not need <= set(df.columns):
        raise SystemExit(f"{args.data}: columns {sorted(need - set(df.columns))} missing (see the serving-dev README)")
    if args.model:
        ModelConfig.resolve(args.model)  # a bad --model fails here, not once per row
    args.multi_model = args.model is None and "model_path" in df and df["model_path"].nunique() > 1
    args.multi_system = "system" in df and df["system"].nunique() > 1
    clients = Counter(row_client(row, args.client) for _, row in df.iterrows())
    args.multi_client = len(clients) > 1
    args.unrecorded = sum(not concurrency_recorded(row) for _, row in df.iterrows())
    print(f"data {args.data}: {len(df)} rows; models "
          f"{args.model or ', '.join(sorted(map(str, df['model_path'].unique()))) if 'model_path' in df else 'qwen3-32b'}; "
          f"profiles {args.profile or 'by system'}; deployment "
          f"{args.deployment}; fp8 rows: weights fp8_e4m3"
          + (f", KV {args.fp8_kv_dtype}" if args.deployment == "default" else ", KV as the recipe sets it")
          + (f"; aiconfigurator's workflow: {args.requests_per_client} x concurrency requests after {args.warmup_per_client} x concurrency "
             f"warm-up{'' if args.no_warmup_drain else ' (drained first)'}"
             if args.deployment == "aiconfigurator" and clients.get("aiconfigurator")
             else "") + (f"; engine overrides {args.overrides}" if args.overrides else ""))
    if clients.get("inferencemax"):
        print(f"client: {clients['inferencemax']} row(s) of InferenceMAX's workflow (--client {args.client}): "
              f"benchmark_serving.py, {INFERENCEMAX.prompts_per_client} x concurrency prompts, lengths uniform in "
              f"{INFERENCEMAX.range_ratio:g} x .. x (--range-mode {INFERENCEMAX.range_mode}), no warm-up in the "
              f"metrics; engine settings as --deployment {args.deployment}, then "
              + ("(--no-script-flags) " if args.no_script_flags else
                 f"the server flags of the {len(INFERENCEMAX_SCRIPTS)} script(s) read (INFERENCEMAX_SCRIPTS) where "
                 f"a row is theirs, and ")
              + f"for TensorRT-LLM with attention DP its balance, timeout "
              f"{INFERENCEMAX.trtllm_attention_dp_balance_iters} steps; {clients.get('aiconfigurator', 0)} row(s) of "
              f"aiconfigurator's")
    for ta, gap in sweeps:
        t0 = time.perf_counter()
        if len(sweeps) > 1:
            print(f"--- client turnaround up to {ta * 1e3:g} ms, client gap {gap * 1e3:g} ms")
        records = [] if args.out else None
        errs, skipped, infeasible, in_prefills, tpots = run_rows(df, args, ta, args.rows, gap, records)
        if args.out:
            atomic_write_text(args.out, pd.DataFrame(records).to_csv(index=False))
        wall = time.perf_counter() - t0
        print(summary("overall", *errs["all"]))
        for key in sorted(k for k in errs if k != "all"):
            print(summary(key, *errs[key]))
        print(f"not predicted: {sum(skipped.values())} rows")
        for why, n in skipped.most_common():
            print(f"  {n:4d} x {why}")
        print(f"called infeasible: {len(infeasible)} rows")
        for rid, why in infeasible:
            print(f"  {rid}: {why}")
        print("TTFT in prefills (median over the rows of TTFT / one prompt's predicted prefill step), measured / predicted:")
        for eng, text in sorted(ttft_in_prefills(in_prefills).items()):
            print(f"  {eng:<7} {text}")
        by_prompt = ttft_in_prefills(in_prefills, by_prompt=True)
        if len(by_prompt) > len({eng for eng, _ in by_prompt}):
            print("  the same by prompt length:")
            for (eng, isl), text in sorted(by_prompt.items()):
                print(f"  {eng:<7} isl{isl:<6} {text}")
        split = split_tpot(tpots)
        if split:
            print("TPOT split (rows differing only in osl; TPOT ~ D + (c/osl) dP): median predicted/measured of the "
                  "decode step D and of the prefill interference dP; then D in ms, measured/predicted, by concurrency "
                  "(median over prompt lengths):")
            for (eng, tp), parts in sorted(split.items()):
                d = np.median([p[2] / p[1] for p in parts])
                dp = np.median([p[4] / p[3] for p in parts])
                cells = by_concurrency([(p[0], p[1] * 1e3, p[2] * 1e3) for p in parts], ".2f")
                print(f"  {eng:<7} TP{tp:<2} n={len(parts):<3} D x{d:.2f}  dP x{dp:.2f}   D: {cells}")
            queue = {k: [p for p in v if len(p) == 7] for k, v in split.items()}
            print_by_layout("TTFT in prefills of the engine's own step (TTFT / dP of the same split, mean over osl), "
                            "measured/predicted by concurrency (median over prompt lengths): the queue a request meets, "
                            "with the prefill's cost divided out on each side:",
                            {k: by_concurrency([(p[0], p[5], p[6]) for p in v], ".1f") for k, v in queue.items() if v})
        exposure = {}
        for layout, parts in prefill_exposure(tpots).items():
            cells = []
            for isl in sorted({p[0] for p in parts}):
                mine = [p for p in parts if p[0] == isl]
                ratio = np.median([p[2] / p[3] for p in mine])
                extra_ms = np.median([(p[2] - p[3]) / p[1] * 1e3 for p in mine])
                cells.append(f"isl{isl} x{ratio:.2f} ({extra_ms:+.1f} ms)")
            exposure[layout] = "  ".join(cells)
        print_by_layout("Prefill work per request (TTFT + c dP: before the first token and while decoding, however the "
                        "queue splits it), measured/predicted by prompt length (median over concurrency), and what one "
                        "prefill costs beyond the prediction, (E measured - E predicted) / c:", exposure)
        print_by_layout("TTFT growth with the request's lifetime (dTTFT / d(osl x TPOT) between the shortest and longest "
                        "osl, in %), measured/predicted by concurrency (median over prompt lengths); 100/c to 100/(c - 1) "
                        "where a new request waits for a running one to finish, about 0 for a queue of prefills alone:",
                        {k: by_concurrency([(c, m * 100, p * 100) for c, m, p in v], ".1f")
                         for k, v in ttft_lifetime_slope(tpots).items()})
        if split:
            print_by_layout("Decode step beyond the prediction, D measured - D predicted in ms by concurrency (median over "
                            "prompt lengths), and its least-squares growth per running sequence (a cost every sequence "
                            "adds to a step, host work per request or a per-sequence kernel cost, reads as a steady "
                            "slope):",
                            {k: "  ".join(f"c{c} {x * 1e3:+.2f}" for c, x in pts) + f"   slope {b * 1e6:+.1f} us/seq"
                             for k, (b, _, pts) in decode_excess(split).items()})
        print_by_layout("TTFT beyond the prediction at each layout's lightest load, measured - predicted in ms by prompt "
                        "length (mean over output lengths; x measured/predicted): a prefill dearer than predicted "
                        "grows with the prompt, a per-request cost outside the engine step does not:",
                        {k: f"c{c}: " + "  ".join(f"isl{isl} {d * 1e3:+.1f} ms (x{r:.2f})" for isl, d, r in cells)
                         for k, (c, cells) in light_load_excess(tpots).items()})
        print(f"targets: {verdict(*errs['all'], len(infeasible))}; {wall:.1f} s for {len(errs['all'][0])} predictions")
        known = errs.get("concurrency recorded")
        if known and len(known[0]) < len(errs["all"][0]):
            print(f"  the same targets over the {len(known[0])} rows whose concurrency is recorded (not the issue's "
                  f"measure, which takes every row): {verdict(*known, len(infeasible))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
