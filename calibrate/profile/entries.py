"""The profile's entry classes: one typed dataclass per YAML section entry, each reading itself strictly.

    from accelcal.calibrate.profile.entries import CollectiveEntry, CollectivePiece
    e = CollectiveEntry("all_reduce", "intra_node", 8, "bf16", [CollectivePiece(None, 2e-5, 1e11)])
    e.piece_for(2**20).bandwidth_bytes_per_s     # 1e11

The YAML schema (docs/ARCHITECTURE.md) is these classes' fields; ``read``
validates one entry with :class:`~accelcal.calibrate.profile.reader.Reader`,
``to_dict`` writes it back.  No torch.
"""

from __future__ import annotations

import copy
import statistics
from dataclasses import dataclass, field, fields
from typing import Any

from accelcal.textsafe import brief
from accelcal.vocab import BUSBW_FACTORS, DTYPE_BYTES, FABRICS, SCOPES, is_kernel_name

from .perf import gemm_estimate_s, gemm_model_time_s, interp_log, ratio_table
from .reader import MAX_MESSAGE_BYTES, MAX_TIME_S, Reader

__all__ = ["AttentionEntry", "CollectiveEntry", "collective_fit_label", "CollectivePiece", "ComputeEntry", "MemoryEntry", "Overheads", "Quality",
           "read_pieces"]


@dataclass
class Quality:
    """How well one fitted quantity matches its measurements."""

    points: int
    """Measured points the fit used."""
    median_rel_err: float
    """Median |predicted/measured - 1| over the fitted points."""
    max_rel_err: float
    """Largest |predicted/measured - 1| over the fitted points."""
    heldout_median_rel_err: float
    """Median |rel err| on points held out of the fit (k-fold or leave-one-out)."""
    heldout_p90_rel_err: float
    """90th percentile of the held-out |rel err|."""
    range_min: float
    """Smallest measured size (bytes for memory/collectives, FLOP for GEMM and attention)."""
    range_max: float
    """Largest measured size, same unit as ``range_min``."""
    converged: bool
    """Whether the optimiser reported convergence."""
    flags: list[str] = field(default_factory=list)
    """Problems: not converged, parameter on a bound, error target missed, too few points, ..."""

    @classmethod
    def read(cls, r: Reader, d: Any, path: str) -> "Quality":
        names = [f.name for f in fields(cls)]
        d = r.mapping(d, path, names)
        rel = lambda k: r.number(d[k], f"{path}.{k}", hi=1e6)  # noqa: E731
        q = cls(
            points=r.integer(d["points"], f"{path}.points"),
            median_rel_err=rel("median_rel_err"),
            max_rel_err=rel("max_rel_err"),
            heldout_median_rel_err=rel("heldout_median_rel_err"),
            heldout_p90_rel_err=rel("heldout_p90_rel_err"),
            range_min=r.number(d["range_min"], f"{path}.range_min", hi=1e25),
            range_max=r.number(d["range_max"], f"{path}.range_max", hi=1e25),
            converged=d["converged"],
            flags=r.str_list(d["flags"], f"{path}.flags"),
        )
        if not isinstance(q.converged, bool):
            raise r.fail(f"{path}.converged", f"expected true/false, got {q.converged!r}")
        if q.range_min > q.range_max:
            raise r.fail(path, f"range_min ({q.range_min:g}) > range_max ({q.range_max:g})")
        return q

    def to_dict(self) -> dict:
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}


@dataclass
class ComputeEntry:
    """GEMM performance of one dtype: a roofline with a measured efficiency correction."""

    peak_flop_per_s: float
    """Compute roof: fitted from measurements (best sustained), or the datasheet dense peak."""
    memory_bandwidth_bytes_per_s: float
    """Effective operand-read bandwidth seen by small-M (memory-bound) GEMMs."""
    overhead_s: float | None = None
    """Per-call floor in seconds (optional)."""
    points: list[list[float]] = field(default_factory=list)
    """Measured medians ``[m, n, k, time_s]`` (device time); empty for datasheet priors."""
    quality: Quality | None = None
    """Fit quality (optional for datasheet priors)."""
    wave_units: int | None = None
    """Parallel units (SMs/CUs) for the wave-quantisation term with 128x128 tiles; null = no quantisation term."""

    gemm_model: Any = None
    """Optional :class:`accelcal.calibrate.gemm_model.GemmModel` (key ``gemm_model``): when present the query uses
    it (wave quantisation, split-K, memory-bound small M) instead of the efficiency-interpolated roofline."""
    grouped_points: list[list[float]] = field(default_factory=list)
    """Measured grouped expert GEMMs ``[experts, m, n, k, time_s]`` (device time of one kernel over ``experts``
    GEMMs of ``m`` tokens each, kernels/grouped_gemm.py); empty: none measured (key ``grouped_points``, optional)."""

    _ratio_cache: dict = field(default_factory=dict, repr=False, compare=False)
    _points_key: list = field(default_factory=list, repr=False, compare=False)
    """[the points list it was built from, its length, the points as a tuple, their (N, K) lines]: see
    :meth:`points_key`."""

    def points_key(self) -> tuple:
        """The measured points as a hashable key (and the (N, K) lines they cover), rebuilt only when ``points``
        is another list or another length: building it walked every point on every query.  Points edited in
        place are not seen; the code replaces the list (Profile.with_bandwidth_scale)."""
        c = self._points_key
        if not c or c[0] is not self.points or c[1] != len(self.points):
            # the list itself is held, so its id cannot be reused while the key stands
            c[:] = [self.points, len(self.points), tuple(tuple(pt) for pt in self.points),
                    frozenset((pt[1], pt[2]) for pt in self.points)]
        return c[2]

    def measures_nk(self, n: float, k: float) -> bool:
        """Whether some measured point lies on the (N, K) line."""
        self.points_key()
        return (n, k) in self._points_key[3]

    def model_time_s(self, m: float, n: float, k: float, elsize: int, out_elsize: int | None = None) -> float:
        return gemm_model_time_s(m, n, k, elsize, self.peak_flop_per_s, self.memory_bandwidth_bytes_per_s,
                                 self.overhead_s or 0.0, self.wave_units, out_elsize)

    def estimate_s(self, m: float, n: float, k: float, elsize: int,
                   out_elsize: int | None = None) -> tuple[float, bool, str]:
        """(time_s, extrapolated, detail) from the model corrected by the measured efficiency."""
        if self.gemm_model is not None:
            return self.gemm_model.estimate_s(m, n, k, self.points)
        # Ratios depend on every parameter; keying on them keeps copies made by with_bandwidth_scale correct.  The
        # points are matched by the identity of their (held) key tuple: hashing it walked every point per query.
        key = (elsize, out_elsize, self.peak_flop_per_s, self.memory_bandwidth_bytes_per_s, self.overhead_s, self.wave_units)
        pts = self.points_key()
        model = lambda a, b, c: self.model_time_s(a, b, c, elsize, out_elsize)  # noqa: E731
        hit = self._ratio_cache.get(key)
        if hit is None or hit[0] is not pts:
            self._ratio_cache.clear()
            hit = self._ratio_cache[key] = (pts, ratio_table(model, self.points))
        return gemm_estimate_s(model, self.points, m, n, k, table=hit[1])

    def grouped_ratio_table(self, elsize: int, out_elsize: int | None = None) -> list[tuple[float, float]]:
        """[(tokens per expert, ratio)]: at each measured m, the median over the grouped cases of measured time /
        this entry's estimate of the one GEMM with the experts stacked along N (how the planner costs a grouped
        kernel); [] when no grouped GEMM was measured."""
        if not self.grouped_points:
            return []
        key = ("grouped", elsize, out_elsize, self.peak_flop_per_s, self.memory_bandwidth_bytes_per_s, self.overhead_s,
               self.wave_units, id(self.gemm_model), self.points_key(),
               tuple(tuple(p) for p in self.grouped_points))
        table = self._ratio_cache.get(key)
        if table is None:
            by_m: dict[float, list[float]] = {}
            for e, pm, n, k, t in self.grouped_points:
                by_m.setdefault(pm, []).append(t / self.estimate_s(pm, e * n, k, elsize, out_elsize)[0])
            table = self._ratio_cache[key] = sorted((pm, statistics.median(r)) for pm, r in by_m.items())
        return table

    def grouped_ratio(self, m: float, elsize: int, out_elsize: int | None = None) -> float | None:
        """The grouped / stacked ratio at ``m`` tokens per expert: :meth:`grouped_ratio_table` interpolated in log m
        and held beyond the measured range; None when no grouped GEMM was measured."""
        table = self.grouped_ratio_table(elsize, out_elsize)
        return interp_log(table, m) if table else None

    def weight_only_scale(self, m: float, n: float, k: float, elsize: int, out_elsize: int | None,
                          weight_bytes: float) -> float:
        """How much faster (or not) this dtype's GEMM runs with its weights stored at ``weight_bytes`` per element:
        the model's time with the weight reads at that size over its time as measured.  The measured correction
        the estimate carries applies to both, so it cancels; the dequantisation in the kernel is not counted."""
        if self.gemm_model is not None:
            g = self.gemm_model
            return float(g.terms(m, n, k, weight_bytes)["time_s"] / g.terms(m, n, k)["time_s"])
        return (gemm_model_time_s(m, n, k, elsize, self.peak_flop_per_s, self.memory_bandwidth_bytes_per_s,
                                  self.overhead_s or 0.0, self.wave_units, out_elsize, weight_bytes)
                / self.model_time_s(m, n, k, elsize, out_elsize))

    @classmethod
    def read(cls, r: Reader, d: Any, path: str, datasheet: bool) -> "ComputeEntry":
        d = r.mapping(d, path, ["peak_flop_per_s", "memory_bandwidth_bytes_per_s", "points"],
                      ["overhead_s", "quality", "wave_units", "gemm_model", "grouped_points"])
        pts = d["points"]
        if not isinstance(pts, list):
            raise r.fail(f"{path}.points", f"expected a list of [m, n, k, time_s], got {type(pts).__name__}")
        points: list[list[float]] = []
        for i, p in enumerate(pts):
            pp = f"{path}.points[{i}]"
            if not isinstance(p, list) or len(p) != 4:
                raise r.fail(pp, f"expected [m, n, k, time_s] (4 numbers), got {brief(p, 80)}")
            m, n, k = (r.number(v, f"{pp}[{j}]", lo=1.0, hi=1e9, what="a GEMM dimension") for j, v in enumerate(p[:3]))
            t = r.number(p[3], f"{pp}[3]", lo=0.0, lo_open=True, hi=MAX_TIME_S, what="seconds")
            points.append([m, n, k, t])
        if not datasheet and not points:
            raise r.fail(f"{path}.points", "a measured profile needs its measured GEMM points (empty list)")
        if not datasheet and d.get("quality") is None:
            raise r.fail(f"{path}.quality", "missing; required for measured profiles")
        wave = d.get("wave_units")
        grouped: list[list[float]] = []
        gp = d.get("grouped_points")
        gp = [] if gp is None else gp
        if not isinstance(gp, list):
            raise r.fail(f"{path}.grouped_points", f"expected a list of [experts, m, n, k, time_s], got "
                                                   f"{type(gp).__name__}")
        for i, p in enumerate(gp):
            pp = f"{path}.grouped_points[{i}]"
            if not isinstance(p, list) or len(p) != 5:
                raise r.fail(pp, f"expected [experts, m, n, k, time_s] (5 numbers), got {brief(p, 80)}")
            dims = [r.number(v, f"{pp}[{j}]", lo=1.0, hi=1e9, what="a grouped GEMM dimension")
                    for j, v in enumerate(p[:4])]
            grouped.append(dims + [r.number(p[4], f"{pp}[4]", lo=0.0, lo_open=True, hi=MAX_TIME_S, what="seconds")])
        return cls(
            peak_flop_per_s=r.flops(d["peak_flop_per_s"], f"{path}.peak_flop_per_s"),
            memory_bandwidth_bytes_per_s=r.memory_bandwidth(d["memory_bandwidth_bytes_per_s"],
                                                            f"{path}.memory_bandwidth_bytes_per_s"),
            overhead_s=r.seconds(d.get("overhead_s"), f"{path}.overhead_s", optional=True),
            points=points,
            quality=Quality.read(r, d["quality"], f"{path}.quality") if d.get("quality") is not None else None,
            wave_units=None if wave is None else r.integer(wave, f"{path}.wave_units", lo=1, hi=100000),
            gemm_model=_read_gemm_model(r, d.get("gemm_model"), f"{path}.gemm_model"),
            grouped_points=grouped,
        )

    def to_dict(self) -> dict:
        return {
            "peak_flop_per_s": float(self.peak_flop_per_s),
            "memory_bandwidth_bytes_per_s": float(self.memory_bandwidth_bytes_per_s),
            "overhead_s": None if self.overhead_s is None else float(self.overhead_s),
            "points": [[float(v) for v in p] for p in self.points],
            "quality": None if self.quality is None else self.quality.to_dict(),
            "wave_units": self.wave_units,
            **({"gemm_model": self.gemm_model.to_dict()} if self.gemm_model is not None else {}),
            **({"grouped_points": [[float(v) for v in p] for p in self.grouped_points]} if self.grouped_points else {}),
        }


def _read_gemm_model(r: Reader, d: Any, path: str) -> Any:
    if d is None:
        return None
    from ..gemm_model import GemmModel  # lazy: keeps this package free of the fit side

    try:
        return GemmModel.from_dict(d, path)
    except ValueError as exc:
        where, _, problem = str(exc).partition(": ")  # GemmModel names the full key path first
        raise r.fail(where, problem) from None


@dataclass
class MemoryEntry:
    """One access pattern (copy, read, write): time = latency_s + bytes moved / bandwidth.

    With ``pieces`` the line is piecewise in the bytes moved (one piece per cache
    level the working set fits in: L2, L3, DRAM), chosen by held-out error like
    the collectives; ``latency_s`` and ``bandwidth_bytes_per_s`` then repeat the
    last (largest-size, DRAM-streaming) piece so readers that want one streaming
    figure keep working.  Entries without ``pieces`` (datasheet priors, profiles
    written before it existed) are a single line.
    """

    latency_s: float | None
    """Constant cost per operation; null only in datasheet priors (not a datasheet figure)."""
    bandwidth_bytes_per_s: float
    """Bytes moved per second (the last piece's when ``pieces`` is given)."""
    quality: Quality | None = None
    """Fit quality (optional for datasheet priors)."""
    pieces: list[CollectivePiece] | None = None
    """Optional piecewise model, ascending ``max_bytes`` (bytes moved), the last with ``max_bytes: null``."""

    def piece_for(self, nbytes: float) -> "CollectivePiece":
        """The piece covering ``nbytes`` moved (a single-line entry is one open-ended piece)."""
        if not self.pieces:
            return CollectivePiece(max_bytes=None, latency_s=self.latency_s, bandwidth_bytes_per_s=self.bandwidth_bytes_per_s)
        return next((p for p in self.pieces if p.max_bytes is None or nbytes <= p.max_bytes), self.pieces[-1])

    @classmethod
    def read(cls, r: Reader, d: Any, path: str, datasheet: bool) -> "MemoryEntry":
        d = r.mapping(d, path, ["latency_s", "bandwidth_bytes_per_s"], ["quality", "pieces"])
        if not datasheet and d.get("quality") is None:
            raise r.fail(f"{path}.quality", "missing; required for measured profiles")
        pieces = None if d.get("pieces") is None else read_pieces(r, d["pieces"], f"{path}.pieces", datasheet)
        e = cls(
            latency_s=r.seconds(d["latency_s"], f"{path}.latency_s", optional=datasheet),
            bandwidth_bytes_per_s=r.memory_bandwidth(d["bandwidth_bytes_per_s"], f"{path}.bandwidth_bytes_per_s"),
            quality=Quality.read(r, d["quality"], f"{path}.quality") if d.get("quality") is not None else None,
            pieces=pieces,
        )
        if pieces and (pieces[-1].bandwidth_bytes_per_s != e.bandwidth_bytes_per_s or pieces[-1].latency_s != e.latency_s):
            raise r.fail(path, f"latency_s/bandwidth_bytes_per_s ({e.latency_s!r}, {e.bandwidth_bytes_per_s!r}) must repeat "
                               f"the last piece's ({pieces[-1].latency_s!r}, {pieces[-1].bandwidth_bytes_per_s!r})")
        return e

    def to_dict(self) -> dict:
        out = {"latency_s": None if self.latency_s is None else float(self.latency_s),
               "bandwidth_bytes_per_s": float(self.bandwidth_bytes_per_s),
               "quality": None if self.quality is None else self.quality.to_dict()}
        if self.pieces:
            out["pieces"] = [p.to_dict() for p in self.pieces]
        return out


@dataclass
class Overheads:
    """Measured per-kernel constants; null = not measured."""

    eager_launch_s: float | None = None
    """Host cost of issuing one kernel from eager Python."""
    launch_sync_s: float | None = None
    """One launch followed by a device synchronise."""
    sync_s: float | None = None
    """A device synchronise with nothing queued."""
    graph_kernel_s: float | None = None
    """Per-kernel cost when replayed from a CUDA/HIP graph."""
    eager_dispatch_s: float | None = None
    """Host cost per work op of a real decoder layer's eager op mix, its view/cast/reshape dispatches included
    (kernels/dispatch.py); what an eager layer's host issue rate is on an accelerator.  Optional (null: not measured)."""

    @classmethod
    def read(cls, r: Reader, d: Any, path: str) -> "Overheads":
        names = [f.name for f in fields(cls)]
        d = r.mapping(d, path, [], names)
        return cls(**{n: r.seconds(d.get(n), f"{path}.{n}", optional=True) for n in names})

    def to_dict(self) -> dict:
        return {f.name: None if getattr(self, f.name) is None else float(getattr(self, f.name)) for f in fields(self)}


@dataclass
class AttentionEntry:
    """One attention phase: time = latency_s + max(FLOP / flop_per_s, bytes / bytes_per_s)."""

    latency_s: float
    """Constant cost per call."""
    flop_per_s: float
    """Sustained attention FLOP rate."""
    bytes_per_s: float
    """Sustained Q+K+V+O byte rate."""
    quality: Quality
    """Fit quality."""
    half_length: float | None = None
    """Optional: KV length (tokens) at which a call reaches half its sustained rate (per-block prologue,
    calibrate/attention_model.py); null/absent = no length term (profiles written before it existed)."""
    wave_units: int | None = None
    """Optional: units (SMs/CUs) prefill thread blocks of ``block_q`` queries are spread over; null = no wave term."""
    block_q: int | None = None
    """Optional: query rows per prefill thread block for the wave term (null: 128)."""

    def time_s(self, phase: str, batch: int, q_len: int, kv_len: int, heads: int, kv_heads: int, head_dim: int,
               flop: float, nbytes: float) -> float:
        """Model time of one call whose FLOP and bytes are already counted (attention_flop_bytes)."""
        from ..attention_model import DEFAULT_BLOCK_Q, attention_model_time_s

        return attention_model_time_s(latency_s=self.latency_s, flop_per_s=self.flop_per_s, bytes_per_s=self.bytes_per_s,
                                      half_length=self.half_length or 0.0, wave_units=self.wave_units,
                                      block_q=self.block_q or DEFAULT_BLOCK_Q, phase=phase, batch=batch, q_len=q_len,
                                      kv_len=kv_len, heads=heads, kv_heads=kv_heads, head_dim=head_dim, elsize=0,
                                      flop=flop, nbytes=nbytes)

    @classmethod
    def read(cls, r: Reader, d: Any, path: str) -> "AttentionEntry":
        d = r.mapping(d, path, ["latency_s", "flop_per_s", "bytes_per_s", "quality"], ["half_length", "wave_units", "block_q"])
        opt_int = lambda k: None if d.get(k) is None else r.integer(d[k], f"{path}.{k}", lo=1, hi=100000)  # noqa: E731
        return cls(latency_s=r.seconds(d["latency_s"], f"{path}.latency_s"),
                   flop_per_s=r.flops(d["flop_per_s"], f"{path}.flop_per_s"),
                   bytes_per_s=r.bandwidth(d["bytes_per_s"], f"{path}.bytes_per_s"),
                   quality=Quality.read(r, d["quality"], f"{path}.quality"),
                   half_length=r.number(d.get("half_length"), f"{path}.half_length", hi=1e7, what="tokens", optional=True),
                   wave_units=opt_int("wave_units"), block_q=opt_int("block_q"))

    def to_dict(self) -> dict:
        out = {"latency_s": float(self.latency_s), "flop_per_s": float(self.flop_per_s),
               "bytes_per_s": float(self.bytes_per_s), "quality": self.quality.to_dict()}
        for k in ("half_length", "wave_units", "block_q"):
            if getattr(self, k) is not None:
                out[k] = float(getattr(self, k)) if k == "half_length" else int(getattr(self, k))
        return out


@dataclass
class CollectivePiece:
    """One size range of a piecewise alpha-beta collective model."""

    max_bytes: float | None
    """Upper end of the size range (S, nccl-tests convention); null for the last piece."""
    latency_s: float | None
    """Alpha; null only in datasheet priors."""
    bandwidth_bytes_per_s: float
    """S / (time - latency): the algorithm bandwidth of this range."""

    def to_dict(self) -> dict:
        return {"max_bytes": None if self.max_bytes is None else float(self.max_bytes),
                "latency_s": None if self.latency_s is None else float(self.latency_s),
                "bandwidth_bytes_per_s": float(self.bandwidth_bytes_per_s)}


def read_pieces(r: Reader, pieces_raw: Any, path: str, datasheet: bool) -> list[CollectivePiece]:
    """A non-empty list of alpha-beta pieces with ascending max_bytes, the last open-ended (collectives, memory)."""
    if not isinstance(pieces_raw, list) or not pieces_raw:
        raise r.fail(path, f"expected a non-empty list of pieces, got {brief(pieces_raw)}")
    pieces = []
    for i, pd_ in enumerate(pieces_raw):
        pp = f"{path}[{i}]"
        pd_ = r.mapping(pd_, pp, ["max_bytes", "latency_s", "bandwidth_bytes_per_s"])
        last = i == len(pieces_raw) - 1
        mb = pd_["max_bytes"]
        if last and mb is not None:
            raise r.fail(f"{pp}.max_bytes", f"the last piece must have max_bytes: null, got {mb!r}")
        if not last and mb is None:
            raise r.fail(f"{pp}.max_bytes", "only the last piece may have max_bytes: null")
        pieces.append(CollectivePiece(
            max_bytes=r.number(mb, f"{pp}.max_bytes", lo=0.0, lo_open=True, hi=MAX_MESSAGE_BYTES, what="bytes",
                               optional=last),
            latency_s=r.seconds(pd_["latency_s"], f"{pp}.latency_s", optional=datasheet),
            bandwidth_bytes_per_s=r.bandwidth(pd_["bandwidth_bytes_per_s"], f"{pp}.bandwidth_bytes_per_s"),
        ))
    bounds = [p.max_bytes for p in pieces[:-1]]
    if any(b >= a for a, b in zip(bounds[1:], bounds[:-1])):
        raise r.fail(path, f"max_bytes must ascend, got {bounds}")
    return pieces


def _collective_group_text(scope: str, group_size: int, kernel: str | None) -> str:
    """``scope,group_size(,kernel)``: the part of a collective entry's names after its op."""
    return f"{scope},{group_size}{',' + kernel if kernel else ''}"


def collective_fit_label(op: str, scope: str, group_size: int, kernel: str | None = None) -> str:
    """``op[scope,group_size(,kernel)]``: how a collective fit is named in its quality flags and messages."""
    return f"{op}[{_collective_group_text(scope, group_size, kernel)}]"


@dataclass
class CollectiveEntry:
    """One (collective, scope, group size): time = latency_s + S / bandwidth_bytes_per_s of the matching piece."""

    op: str
    """all_reduce, all_gather, reduce_scatter, all_to_all, broadcast, send_recv, ..."""
    scope: str
    """intra_node or inter_node."""
    group_size: int
    """Ranks in the group."""
    dtype: str
    """Element type measured."""
    pieces: list[CollectivePiece]
    """Ascending ``max_bytes``; the last has ``max_bytes: null``."""
    quality: Quality | None = None
    """Fit quality (optional for datasheet priors)."""
    fabric: str | None = None
    """Optional: the links measured (accelcal.vocab.FABRICS: nvswitch, nvlink, pcie, infiniband, ...); on a
    switch fabric an unmeasured group size keeps the measured latency (accelcal.vocab.SWITCH_FABRICS)."""
    kernel: str | None = None
    """Optional: the implementation measured when it is not the collective library's own (NCCL, RCCL, gloo),
    e.g. ``vllm_custom_ar``: a serving engine's one-/two-shot all-reduce over peer memory.  Queries name the
    kernel they want (an engine preset's ``tp_all_reduce_kernel``); plain queries use library entries only."""

    @property
    def key(self) -> tuple:
        return (self.op, self.scope, self.group_size, self.kernel)

    @property
    def label(self) -> str:
        return f"collectives[{self.op},{_collective_group_text(self.scope, self.group_size, self.kernel)}]"

    @property
    def fit_label(self) -> str:
        """How the import names this entry's fit in its quality flags (collective_fit_label)."""
        return collective_fit_label(self.op, self.scope, self.group_size, self.kernel)

    def piece_for(self, nbytes: float) -> CollectivePiece:
        for p in self.pieces:
            if p.max_bytes is None or nbytes <= p.max_bytes:
                return p
        return self.pieces[-1]

    @classmethod
    def read(cls, r: Reader, d: Any, path: str, datasheet: bool) -> "CollectiveEntry":
        d = r.mapping(d, path, ["op", "scope", "group_size", "dtype", "pieces"], ["quality", "fabric", "kernel"])
        op = r.string(d["op"], f"{path}.op", list(BUSBW_FACTORS))
        pieces = read_pieces(r, d["pieces"], f"{path}.pieces", datasheet)
        if not datasheet and d.get("quality") is None:
            raise r.fail(f"{path}.quality", "missing; required for measured profiles")
        return cls(op=op, scope=r.string(d["scope"], f"{path}.scope", SCOPES),
                   group_size=r.integer(d["group_size"], f"{path}.group_size", lo=1, hi=1_000_000),
                   dtype=r.string(d["dtype"], f"{path}.dtype", list(DTYPE_BYTES)), pieces=pieces,
                   quality=Quality.read(r, d["quality"], f"{path}.quality") if d.get("quality") is not None else None,
                   fabric=r.string(d["fabric"], f"{path}.fabric", list(FABRICS)) if d.get("fabric") is not None else None,
                   kernel=_kernel_name(r, d.get("kernel"), f"{path}.kernel"))

    def to_dict(self) -> dict:
        out = {"op": self.op, "scope": self.scope, "group_size": int(self.group_size), "dtype": self.dtype,
               "pieces": [p.to_dict() for p in self.pieces],
               "quality": None if self.quality is None else self.quality.to_dict()}
        if self.fabric is not None:
            out["fabric"] = self.fabric
        if self.kernel is not None:
            out["kernel"] = self.kernel
        return out


def _kernel_name(r: Reader, v: Any, path: str) -> str | None:
    """A collective kernel name: null, or lower-case letters, digits and underscores (e.g. vllm_custom_ar)."""
    if v is None:
        return None
    if not is_kernel_name(v):
        raise r.fail(path, f"expected a kernel name of lower-case letters, digits and '_' (e.g. vllm_custom_ar), got {v!r}")
    return v
