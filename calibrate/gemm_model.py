"""A GEMM time model over (M, N, K) that generalises across weight shapes, not only along M.

    from accelcal.calibrate.gemm_model import GemmModel
    g = GemmModel(peak_flop_per_s=7e14, memory_bandwidth_bytes_per_s=4.2e12, overhead_s=4e-6, element_bytes=2,
                  wave_units=132, tile_m=64, tile_n=128, split_k_min=1024)
    g.time_s(1, 1280, 8192)           # 70B QKV at TP=8, one token
    g.terms(128, 9216, 16384)         # every term: tiles, waves, split-K factor, compute / memory time, regime

time = overhead + (compute^p + memory^p)^(1/p) + output_s_per_element x M x N + column_s x N, with

* **compute** (wave quantisation, K-split): the output is cut into ``tile_m x tile_n`` tiles; when the tiles
  do not fill the ``wave_units`` (SMs/CUs; 1 on a one-thread CPU device), K is split into
  ``split = min(units // tiles, K // split_k_min)`` slices so more units work; ``waves = ceil(tiles x split /
  units)`` and every unit of every wave computes a whole tile of its K slice at ``peak / units``.  M up to
  ``gemv_max_m`` runs a GEMV-like path without tile padding (cuBLAS picks one for M=1).
* **memory** (the small-M regime): A, B and C once at ``memory_bandwidth_bytes_per_s``, plus the fp32
  partial sums a split-K kernel writes and reads back.
* ``sharpness`` p blends the two: p -> inf is the plain roofline max, p = 1 their sum (no overlap).
* ``column_s``: a cost per weight column whatever M, i.e. per output feature.  A CPU kernel that packs or
  converts each weight panel per call pays it.  Seen on the Intel VM's bf16 GEMMs: left out, the K = 512
  families come out 20-30% fast and the K >= 1024 ones 5-15% slow, because at a fixed weight size a
  per-column cost weighs twice as much at half the K.  Fitted >= 0 on CPU devices only (one unit); GPU
  kernels do not repack weights per call, so there it stays 0.

All parameters are per dtype, fitted by :func:`accelcal.calibrate.fit_gemm.fit_gemm_model` (scipy
``least_squares`` on relative residuals, soft-L1 loss, physical bounds; the integer tile/split terms by grid
search).  No torch, no per-shape constants: one parameter set covers every (M, N, K) of a dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Mapping, Sequence

import numpy as np

from accelcal.textsafe import brief

__all__ = ["GemmModel", "GEMM_MODEL_KEYS"]

_PARTIAL_BYTES = 4
"""Split-K partial sums are accumulated in fp32."""


@dataclass(frozen=True)
class GemmModel:
    """Fitted GEMM time model of one dtype on one device (stored as ``compute.<dtype>.gemm_model``)."""

    peak_flop_per_s: float
    """Tensor/vector FLOP rate of the whole device when every unit computes full tiles."""
    memory_bandwidth_bytes_per_s: float
    """Operand traffic rate (A, B, C and split-K partials) in the memory-bound small-M regime."""
    overhead_s: float
    """Per-call floor (launch inside a graph, prologue/epilogue)."""
    element_bytes: int
    """Bytes per element of A, B and C for this dtype."""
    wave_units: int = 1
    """Units a wave of tiles is spread over: SMs/CUs on GPUs, threads of one CPU device."""
    tile_m: int = 1
    """Output tile rows (M is padded up to a multiple of it)."""
    tile_n: int = 1
    """Output tile columns (N is padded up to a multiple of it)."""
    split_k_min: int | None = None
    """Smallest K slice a split-K kernel hands one unit; null = the kernel never splits K."""
    gemv_max_m: int = 0
    """M up to which the kernel is a GEMV-like path (no tile padding, no waves); 0 = none."""
    sharpness: float = 40.0
    """p of the compute/memory blend (compute^p + memory^p)^(1/p): 1 = sum, large = max (roofline)."""
    output_s_per_element: float = 0.0
    """Cost per output element M x N (epilogue, horizontal reductions of a CPU GEMV)."""
    column_s: float = 0.0
    """Cost per weight column N whatever M (packing or converting a weight panel per call)."""

    # ------------------------------------------------------------------ model

    def terms(self, m: Any, n: Any, k: Any, weight_element_bytes: float | None = None) -> dict[str, Any]:
        """Every term of the model (arrays broadcast): tiles, split_k, waves, compute_s, memory_s, time_s, regime.
        ``weight_element_bytes``: the weights (B) stored at that size, a weight-only format computing in this dtype."""
        from accelcal.vocab import gemm_flop, gemm_traffic_bytes  # one definition of the FLOP/byte formulas

        m, n, k = (np.asarray(v, dtype=float) for v in (m, n, k))
        units = float(self.wave_units)
        tiles = np.ceil(m / self.tile_m) * np.ceil(n / self.tile_n)
        if self.split_k_min:
            split = np.where(tiles >= units, 1.0,
                             np.maximum(1.0, np.minimum(np.floor(units / tiles), np.floor(k / self.split_k_min))))
        else:
            split = np.ones_like(tiles)
        waves = np.ceil(tiles * split / units)
        tile_flop = 2.0 * self.tile_m * self.tile_n * np.ceil(k / split)
        compute = waves * tile_flop / (self.peak_flop_per_s / units)
        gemv = m <= self.gemv_max_m
        compute = np.where(gemv, gemm_flop(m, n, k) / self.peak_flop_per_s, compute)
        split = np.where(gemv, 1.0, split)
        partial = np.where(split > 1, 2.0 * split * m * n * _PARTIAL_BYTES, 0.0)
        traffic = gemm_traffic_bytes(m, n, k, self.element_bytes, weight_bytes=weight_element_bytes)
        memory = (traffic + partial) / self.memory_bandwidth_bytes_per_s
        p = self.sharpness
        hi = np.maximum(compute, memory)
        # (c^p + m^p)^(1/p) written around the larger term so large p does not overflow.
        blend = hi * ((compute / hi) ** p + (memory / hi) ** p) ** (1.0 / p)
        time = self.overhead_s + blend + self.output_s_per_element * m * n + self.column_s * n
        return {"tiles": tiles, "split_k": split, "waves": np.where(gemv, 0.0, waves), "gemv": gemv,
                "compute_s": compute, "memory_s": memory, "time_s": time,
                "regime": np.where(compute >= memory, "compute-bound", "memory-bound")}

    def times_s(self, m: Any, n: Any, k: Any) -> np.ndarray:
        """Vectorised :meth:`time_s`."""
        return self.terms(m, n, k)["time_s"]

    def time_s(self, m: float, n: float, k: float) -> float:
        """Predicted seconds of C[m, n] = A[m, k] @ B[k, n]."""
        return float(self.times_s(m, n, k))

    def describe(self, m: float, n: float, k: float) -> str:
        """One line naming the binding term, for ``Estimate.detail``."""
        t = {key: np.asarray(v).item() for key, v in self.terms(m, n, k).items()}
        path = "GEMV path" if t["gemv"] else (f"{t['tiles']:.0f} tiles of {self.tile_m}x{self.tile_n}, split-K "
                                             f"{t['split_k']:.0f}, {t['waves']:.0f} wave(s) on {self.wave_units} units")
        return (f"shape model: {t['regime']} ({path}; compute {t['compute_s'] * 1e6:.3g} us, "
                f"memory {t['memory_s'] * 1e6:.3g} us)")

    def estimate_s(self, m: float, n: float, k: float, points: Sequence[Sequence[float]] = ()
                   ) -> tuple[float, bool, str]:
        """(time_s, extrapolated, detail) for the profile query.

        On a measured (N, K) line and inside its measured M range the model is multiplied by the measured/model
        ratio interpolated in log M (measured shapes come back as measured); everywhere else it is the model
        alone, which is what the family-held-out error judges.  ``extrapolated``: M, N or K outside the
        measured range of ``points``, or an (N, K) no measured family has (a shape the sweep did not cover:
        ``accelcal calibrate --for-model`` measures a model's TP-divided shapes).
        """
        base = self.time_s(m, n, k)
        detail = self.describe(m, n, k)
        if not points:
            return base, True, detail + "; no measured shapes"
        arr = np.asarray(points, dtype=float)
        extrap = any(v < arr[:, i].min() or v > arr[:, i].max() for i, v in enumerate((m, n, k)))
        line = arr[(arr[:, 1] == float(n)) & (arr[:, 2] == float(k))]
        if not len(line):
            extrap = True
            detail += f"; (N={n:g}, K={k:g}) not measured"
        if len(line) and line[:, 0].min() <= m <= line[:, 0].max():
            line = line[np.argsort(line[:, 0])]
            ms, idx = np.unique(line[:, 0], return_inverse=True)
            lr = np.log(line[:, 3] / self.times_s(line[:, 0], line[:, 1], line[:, 2]))
            lr = np.array([np.median(lr[idx == i]) for i in range(len(ms))])
            base *= math.exp(float(np.interp(math.log(m), np.log(ms), lr)))
            detail += f"; corrected by the measured (N={n:g}, K={k:g}) line"
        return base, extrap, detail + ("; outside the measured M/N/K range" if extrap and len(line) else "")

    # ------------------------------------------------------------------ (de)serialisation

    def to_dict(self) -> dict:
        return {f.name: (None if getattr(self, f.name) is None else
                         (int(getattr(self, f.name)) if f.type in ("int", "int | None") else float(getattr(self, f.name))))
                for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], path: str = "gemm_model") -> "GemmModel":
        """Strict: unknown or missing keys, wrong types and out-of-range values raise ValueError naming ``path.key``."""
        if not isinstance(d, Mapping):
            raise ValueError(f"{path}: expected a mapping of model parameters, got {type(d).__name__}")
        required = ("peak_flop_per_s", "memory_bandwidth_bytes_per_s", "overhead_s", "element_bytes")
        unknown = sorted(set(d) - set(GEMM_MODEL_KEYS))
        missing = [key for key in required if key not in d]
        if unknown or missing:
            raise ValueError(f"{path}: unknown key(s) {unknown}, missing key(s) {missing}; allowed {list(GEMM_MODEL_KEYS)}")
        out: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in d:
                continue
            v = d[f.name]
            if f.name == "split_k_min" and v is None:
                out[f.name] = None
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
                raise ValueError(f"{path}.{f.name}: expected a finite number, got {brief(v, 40)}")
            if f.type in ("int", "int | None"):
                if float(v) != int(v) or int(v) < (0 if f.name == "gemv_max_m" else 1):
                    raise ValueError(f"{path}.{f.name}: expected an integer >= {0 if f.name == 'gemv_max_m' else 1}, got {v!r}")
                out[f.name] = int(v)
            else:
                if float(v) < 0 or (f.name in ("peak_flop_per_s", "memory_bandwidth_bytes_per_s") and float(v) <= 0):
                    raise ValueError(f"{path}.{f.name}: expected a positive number, got {v!r}")
                out[f.name] = float(v)
        if out.get("sharpness", 40.0) < 1.0:
            raise ValueError(f"{path}.sharpness: expected >= 1 (1 = compute + memory), got {out['sharpness']!r}")
        return cls(**out)


GEMM_MODEL_KEYS: tuple[str, ...] = tuple(f.name for f in fields(GemmModel))
"""Keys of a ``compute.<dtype>.gemm_model`` mapping in the profile."""
