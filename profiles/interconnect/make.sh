#!/usr/bin/env bash
# Rebuild the shipped interconnect profiles from the published logs in sources/ (verbatim cuts; see sources/README.md).
set -euo pipefail
cd "$(dirname "$0")"
accelcal import nccl-tests sources/h100-nvswitch-8-all_reduce.txt --out h100-nvswitch-8.yaml --name h100-nvswitch-8 --fabric nvswitch --force \
  --citation "https://github.com/NVIDIA/nccl-tests/issues/290 (single-node log in the issue description: all_reduce_perf -g 8 on 8 x NVIDIA H100 80GB HBM3, node005; sizes 128 MiB..4 GiB only)"
accelcal import nccl-tests sources/h100-2x8-ib400-all_reduce.txt --out h100-2x8-ib-ndr400.yaml --name h100-2x8-ib-ndr400 --fabric infiniband --force \
  --citation "https://github.com/NVIDIA/nccl-tests/issues/309 (issue description: 2 x Dell XE9680, each 8 x H100 and 8 x ConnectX-7 InfiniBand 400 Gb/s; all_reduce_perf_mpi -b 8 -e 16g -g 1, NCCL 2.26.2)"
accelcal import nccl-tests sources/gcp-a3mega-h100-2x8-all_reduce.txt --out gcp-a3mega-h100-2x8.yaml --name gcp-a3mega-h100-2x8 --force \
  --citation "https://github.com/lessizzmore/create-a3mega-ztan-fork/blob/02dd8f455c43ced1cf442ef29334bda97149264b/ztan-NCCL-test-result (2 x 8 H100; the repository's scripts create GCP A3 Mega instances; all_reduce_perf -b 8 -e 8G -g 1)"
accelcal import nccl-tests sources/oci-h200-2x8-rdma-all_reduce.txt --out oci-h200-2x8-rdma.yaml --name oci-h200-2x8-rdma --force \
  --citation "https://github.com/argonne-lcf/oci-howto/blob/38d4343af7f9e68b69f840af04c6f5a196106063/4_jobscript.md (2 x OCI H200 nodes over the H200/RDMA fabric, 16 ranks; all_reduce_perf 1 GiB..16 GiB only, NCCL 2.27.5)"
accelcal import nccl-tests sources/h100-nvswitch-4of8-all_reduce.txt sources/h100-nvswitch-4of8-all_gather.txt sources/h100-nvswitch-4of8-reduce_scatter.txt \
  sources/h100-engine-allreduce-sglang-pr2904.csv \
  --out h100-nvswitch-4of8.yaml --name h100-nvswitch-4of8 --devices-per-node 8 --fabric nvswitch --force \
  --citation "https://github.com/waynehacking8/nccl-collectives-bench/tree/8ab7496db79ead1383ff47805c91fcf489c88406/results/quiet (quiet-box re-run: all_reduce_perf / all_gather_perf / reduce_scatter_perf -b 8 -e 8G -f 2 -g 4 on 4 of the 8 GPUs of an 8 x H100 80GB SXM5 NVSwitch host, nccl-tests 2.18.3 with NCCL 2.29.2 (the logs' nccl-library=22902); topology_host.txt in the same repository shows NV18 between all 8 GPUs)" \
  --citation "https://github.com/sgl-project/sglang/pull/2904 (section 'unit test performance in H100 (without cuda graph)': vLLM's custom all-reduce and sgl-kernel's port of TensorRT-LLM's custom all-reduce on 2, 4 and 8 H100s, fp32 buffers of 2 KiB..4 MiB; transcribed in sources/h100-engine-allreduce-sglang-pr2904.csv)"
accelcal import nccl-tests sources/pcie-rtx4090-8-all_reduce.txt --out pcie-rtx4090-8.yaml --name pcie-rtx4090-8 --fabric pcie --force \
  --citation "https://blog.chlc.cc/p/rtx4090-gpudirect-p2p-unlocked (section 'Test the original performance' / 'NCCL Tests', posted 2025-02-07: all_reduce_perf -b 8 -e 128M -f 2 -g 8 on 8 x GeForce RTX 4090, 2 x AMD EPYC 7542, no PCIe switch, every GPU pair SYS in nvidia-smi topo, stock driver with P2P disabled; stands for a PCIe-only node without NVLink)"
