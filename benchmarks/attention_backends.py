"""Which scaled-dot-product-attention kernel torch runs for a whole prompt and for a chunk after cached context.

    python benchmarks/attention_backends.py --device cuda:0
    python benchmarks/attention_backends.py --device cpu --heads 8 --kv-heads 2 --head-dim 64 --q 256 --kv 1024

A prefill chunk of q new tokens after kv - q cached ones needs the causal mask aligned to the last query
(lower right).  torch's ``is_causal`` aligns it to the first query, so a chunk goes through
``torch.nn.attention.bias.causal_lower_right`` (which calls a fused kernel of its choice directly) or an
explicit boolean mask; a whole prompt (q = kv) takes SDPA's default dispatch.  This prints, per variant, the
kernels the profiler saw and the time (CUDA graph replay where the device has graphs), so a difference in
rate between whole prompts and chunks can be told apart from a difference in kernel.  Every figure is
measured in this run; nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--q", type=int, default=2048, help="chunk tokens")
    ap.add_argument("--kv", type=int, default=8192, help="cached + chunk tokens")
    ap.add_argument("--dtype", default="bf16", choices=("bf16", "fp16", "fp32"))
    args = ap.parse_args(argv)

    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.attention.bias import causal_lower_right

    from accelcal.kernels.cases import TORCH_DTYPES
    from accelcal.kernels.device import resolve_device
    from accelcal.kernels.timing import TimingConfig, time_op
    from accelcal.vocab import attention_flop_bytes

    dev = resolve_device(args.device)
    dt = TORCH_DTYPES[args.dtype]
    h, kvh, d, q, kv = args.heads, args.kv_heads, args.head_dim, args.q, args.kv
    g = h // kvh

    def qkv(qlen: int, kvlen: int):
        return (torch.randn(1, h, qlen, d, dtype=dt, device=dev.torch), torch.randn(1, kvh, kvlen, d, dtype=dt, device=dev.torch),
                torch.randn(1, kvh, kvlen, d, dtype=dt, device=dev.torch))

    full, chunk = qkv(kv, kv), qkv(q, kv)
    mask = torch.ones(q, kv, dtype=torch.bool, device=dev.torch).tril(diagonal=kv - q)
    backends = {"default": None, "flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
                "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}

    def variants():
        for bname, be in backends.items():
            yield f"whole prompt q=kv={kv}, is_causal, backend {bname}", be, full, {"is_causal": True}, True
            yield f"chunk q={q} kv={kv}, causal_lower_right, backend {bname}", be, chunk, {"attn_mask": causal_lower_right(q, kv)}, False
            yield f"chunk q={q} kv={kv}, boolean mask, backend {bname}", be, chunk, {"attn_mask": mask}, False

    print(f"device {dev.spec} ({torch.cuda.get_device_name(dev.torch) if dev.type == 'cuda' else dev.type}), torch {torch.__version__}, "
          f"{args.dtype}, heads {h}/{kvh}, head_dim {d}")
    timing = TimingConfig.quick()
    for name, be, (qq, kk, vv), kw, whole in variants():
        def call(_i: int = 0, qq=qq, kk=kk, vv=vv, kw=kw):
            return F.scaled_dot_product_attention(qq, kk, vv, enable_gqa=g > 1, **kw)
        ctx = sdpa_kernel([be]) if be is not None else contextlib.nullcontext()
        try:
            with ctx:
                call()
                kernels = _kernel_names(torch, call) if dev.type == "cuda" else "-"
                t = time_op(call, dev, timing)
        except Exception as exc:  # a backend that refuses this case says so; the next one is tried
            print(f"  {name:<62} not run: {str(exc).splitlines()[0][:90]}")
            continue
        qlen = kv if whole else q
        flop, _ = attention_flop_bytes(1, qlen, kv, h, kvh, d, 2, True)
        print(f"  {name:<62} {t.device.median_s * 1e6:9.1f} us  {flop / t.device.median_s / 1e12:7.1f} TFLOP/s  "
              f"({t.device_method})  kernels: {kernels}")
    return 0


def _kernel_names(torch, call) -> str:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        call()
        torch.cuda.synchronize()
    names = sorted({e.name for e in prof.events() if e.device_type.name == "CUDA"})
    return "; ".join(n[:60] for n in names) or "-"


if __name__ == "__main__":
    from _cli import run_main

    run_main(main)
