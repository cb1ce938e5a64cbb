"""The one collective harness: plan groups and cases, check, time on every rank, MAX across ranks.

    # inside a rank, after torch.distributed.init_process_group (see worker.py):
    from accelcal.collectives.harness import Harness
    h = Harness(denv, device, backend="gloo", preset="quick", progress=print)
    h.setup_groups()
    rs = h.sweep(ops=("all_reduce",), dtypes=("fp32",), sizes_bytes=(1 << 20,))   # a ResultSet
    rs.frame()[["op", "size_bytes", "median_s", "busbw_bytes_per_s"]]

Per case, on every rank of the world (ranks outside the case's group take part
in the control steps only):

1. pre-flight: all ranks all-gather (case index, op, dtype, count, group, size)
   and a mismatch is a :class:`CaseMismatch` naming the field on every rank;
2. correctness outside the timed loop with rank-patterned data; a backend that
   rejects the dtype is a skipped row, a wrong value a failed row;
3. warm-up and samples through the timing core's multi-rank policy,
   :class:`accelcal.kernels.timing.RankTimer` (agreed time-based warm-up, so
   every rank issues the same number of calls; graph replay when every rank
   could capture the op, else back-to-back queues, for the pipelined mode;
   single calls for the blocking mode; a group barrier before each sample;
   elementwise MAX of the samples across ranks);
4. ``Stats.from_samples``, and algbw = S / t, busbw = algbw x factor
   (nccl-tests conventions).
"""

from __future__ import annotations

import os
import signal
import time
import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist

from accelcal.kernels import timing
from accelcal.kernels.device import Device
from accelcal.results import STATUS_FAILED, ResultSet
from accelcal.units import fmt_bytes
from accelcal.vocab import DTYPE_BYTES

from .distenv import DistEnv
from .ops import OPS, GroupCtx, get_op
from .presets import DTYPES, get_preset

__all__ = ["CaseMismatch", "Case", "GroupSpec", "Harness", "Fault", "DTYPE_MAP", "ELSIZE", "plan_groups", "plan_cases",
           "parse_fault"]

DTYPE_MAP: dict[str, torch.dtype] = {
    "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "fp8_e4m3": torch.float8_e4m3fn,
}
ELSIZE: dict[str, int] = {k: DTYPE_BYTES[k] for k in DTYPE_MAP}
"""Element size of each collective dtype (accelcal.vocab.DTYPE_BYTES)."""
_OP_NAMES = tuple(OPS)
# torch 2.13 renamed the tensor form; older releases only have the old name.
_all_gather_tensor = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor


class CaseMismatch(RuntimeError):
    """Ranks disagree on the case they are about to run (op, dtype, count or group)."""


@dataclass(frozen=True)
class GroupSpec:
    """One process group a case can run on."""

    ranks: tuple[int, ...]
    """Global ranks, in group-rank order."""
    scope: str
    """``intra_node`` when every rank is on one node, else ``inter_node``."""

    @property
    def size(self) -> int:
        return len(self.ranks)


@dataclass(frozen=True)
class Case:
    """One measured case: an op, a dtype, a size and a group."""

    index: int
    """Position in the sweep (what fault hooks and progress lines count)."""
    op: str
    """Collective name."""
    dtype: str
    """dtype name (fp32, bf16, fp16, fp8_e4m3)."""
    requested_bytes: int
    """Size the user asked for."""
    count: int
    """Elements (S / element size), rounded so chunks divide by the group size."""
    size_bytes: int
    """S really moved, nccl-tests convention."""
    group_id: int
    """Index into the harness's group list."""


def plan_groups(world_size: int, node_of: list[int]) -> list[GroupSpec]:
    """The world plus every power-of-two sub-group size, inside one node and spanning nodes.

    Size g gets the contiguous ranks 0..g-1 (the TP/EP shape inside a node) and,
    when that stays on one node but nodes exist that g ranks could span, the
    strided ranks 0, w/g, 2w/g, ... (one per node as far as possible).
    """
    if len(node_of) != world_size:
        raise ValueError(f"node_of has {len(node_of)} entries for world_size {world_size}")

    def spec(ranks: tuple[int, ...]) -> GroupSpec:
        return GroupSpec(ranks, "intra_node" if len({node_of[r] for r in ranks}) == 1 else "inter_node")

    out: list[GroupSpec] = []
    seen: set[tuple[int, ...]] = set()
    sizes = []
    g = 2
    while g < world_size:
        sizes.append(g)
        g *= 2
    sizes.append(world_size)
    for g in sizes:
        cands = [tuple(range(g))]
        if world_size % g == 0:
            cands.append(tuple(i * (world_size // g) for i in range(g)))
        specs = [spec(c) for c in cands]
        for s in specs:
            if s.ranks in seen or (s is not specs[0] and s.scope == specs[0].scope):
                continue
            seen.add(s.ranks)
            out.append(s)
    return out


def plan_cases(ops: tuple[str, ...], dtypes: tuple[str, ...], sizes_bytes: tuple[int, ...],
               groups: list[GroupSpec]) -> list[Case]:
    """Every (group, op, dtype, size) that applies; point-to-point ops only on groups of two."""
    cases: list[Case] = []
    for gid, grp in enumerate(groups):
        for name in ops:
            op = get_op(name)
            if op.pair_only and grp.size != 2:
                continue
            for dt in dtypes:
                for req in sizes_bytes:
                    count = op.count_for(req, grp.size, ELSIZE[dt])
                    cases.append(Case(len(cases), name, dt, req, count, op.bytes_moved(count, ELSIZE[dt]), gid))
    return cases


@dataclass(frozen=True)
class Fault:
    """A test-only fault (env ACCELCAL_FAULT=kind:rankR:caseC[:seconds])."""

    kind: str
    """kill | sleep | mismatch | corrupt."""
    rank: int
    """Rank that misbehaves."""
    case: int
    """Case index at which it does."""
    seconds: float = 3600.0
    """How long ``sleep`` sleeps."""


def parse_fault(spec: str | None) -> Fault | None:
    if not spec:
        return None
    parts = spec.split(":")
    kinds = ("kill", "sleep", "mismatch", "corrupt")
    try:
        kind, r, c = parts[0], parts[1], parts[2]
        if kind not in kinds or not r.startswith("rank") or not c.startswith("case"):
            raise ValueError
        return Fault(kind, int(r[4:]), int(c[4:]), float(parts[3]) if len(parts) > 3 else 3600.0)
    except (ValueError, IndexError):
        raise ValueError(f"ACCELCAL_FAULT={spec!r}: expected kind:rankR:caseC[:seconds] with kind in {kinds}") from None


class Harness:
    """Runs cases on one rank; every rank of the world runs the same sweep in lock-step."""

    def __init__(self, denv: DistEnv, device: Device, backend: str, preset: str = "quick",
                 progress: Callable[[str], object] | None = print, fault: Fault | None = None) -> None:
        p = get_preset(preset)
        self.denv = denv
        self.device = device
        self.backend = backend
        self.cfg = dataclasses.replace(timing.TimingConfig.preset(p.timing), **p.timing_overrides)
        self.progress = progress if denv.rank == 0 else None
        self.fault = fault
        self.phase = "start-up"
        """What this rank is doing now; error messages and the deadline watchdog quote it."""
        self.groups: list[GroupSpec] = []
        self._pgs: list[object] = []
        self.node_of: list[int] = []
        self.graph_capable = device.has_graphs and backend.endswith("nccl") and self.cfg.use_graphs

    # -- control plane: tiny collectives on the world group --------------------------------
    def _gather_ints(self, values: list[int]) -> torch.Tensor:
        mine = torch.tensor(values, dtype=torch.int64, device=self.device.torch)
        out = torch.empty(self.denv.world_size * len(values), dtype=torch.int64, device=self.device.torch)
        _all_gather_tensor(out, mine)
        return out.view(self.denv.world_size, len(values)).cpu()

    def _world_max(self, values: list[float]) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64, device=self.device.torch)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.cpu().tolist()

    def setup_groups(self) -> list[GroupSpec]:
        """Learn which node each rank is on and create every sub-group (all ranks, same order)."""
        self.phase = "group set-up"
        self.node_of = self._gather_ints([self.denv.node_rank])[:, 0].tolist()
        self.groups = plan_groups(self.denv.world_size, self.node_of)
        self._pgs = [None if g.size == self.denv.world_size else dist.new_group(list(g.ranks)) for g in self.groups]
        return self.groups

    def close(self) -> None:
        """Destroy the sub-groups (before the world group), so no communicator thread outlives the sweep."""
        for pg in self._pgs:
            if pg is not None:
                dist.destroy_process_group(pg)
        self._pgs = []

    def _ctx(self, gid: int) -> GroupCtx | None:
        g = self.groups[gid]
        if self.denv.rank not in g.ranks:
            return None
        return GroupCtx(self._pgs[gid], g.ranks, g.ranks.index(self.denv.rank))

    # -- one case ----------------------------------------------------------------------------
    def _preflight(self, case: Case) -> None:
        count = case.count
        if self.fault and self.fault.kind == "mismatch" and self.fault.rank == self.denv.rank and self.fault.case == case.index:
            count = case.count * 2 + 1
        fields = ("case index", "op", "dtype", "count", "group", "group size", "size_bytes")
        mine = [case.index, _OP_NAMES.index(case.op), DTYPES.index(case.dtype), count, case.group_id,
                self.groups[case.group_id].size, case.size_bytes if count == case.count else count * ELSIZE[case.dtype]]
        table = self._gather_ints(mine)
        for r in range(table.shape[0]):
            row = table[r].tolist()
            for k, name in enumerate(fields):
                if row[k] != table[0, k].item():
                    vals = ", ".join(f"rank {q}={table[q, k].item()}" for q in range(table.shape[0]))
                    raise CaseMismatch(f"case mismatch before case {case.index} ({case.op} {case.dtype} "
                                       f"{case.size_bytes} B): ranks disagree on {name}: {vals}")

    def _inject(self, case: Case, where: str) -> None:
        f = self.fault
        if not f or f.rank != self.denv.rank or f.case != case.index:
            return
        if f.kind == "kill" and where == "start":
            os.kill(os.getpid(), signal.SIGKILL)
        if f.kind == "sleep" and where == "start":
            time.sleep(f.seconds)

    def _check(self, case: Case, ctx: GroupCtx | None) -> tuple[str, str]:
        """(status, reason): ok, skipped (backend cannot), failed (wrong values) — agreed by all ranks."""
        op, dtype = get_op(case.op), DTYPE_MAP[case.dtype]
        code, msg = 0, ""
        bufs = None
        if ctx is not None:
            try:
                bufs = op.make_buffers(case.count, ctx, dtype, self.device.torch, "pattern")
            except (torch.OutOfMemoryError, RuntimeError, TypeError) as exc:
                code, msg = 3, f"cannot allocate/convert inputs: {type(exc).__name__}: {str(exc)[:160]}"
        # Allocation first, agreed, so no rank enters a collective its peer will never join.
        codes = self._gather_ints([code])[:, 0].tolist()
        if max(codes) == 0:
            if ctx is not None:
                code, msg = self._run_and_check(case, ctx, bufs)
            codes = self._gather_ints([code])[:, 0].tolist()
        del bufs
        worst = max(codes)
        if worst == 0:
            return "ok", ""
        bad = [r for r, c in enumerate(codes) if c == worst]
        reason = msg if codes[self.denv.rank] == worst and msg else ""
        if worst == 2:
            return STATUS_FAILED, reason or f"wrong result on rank(s) {bad} (rank-patterned check)"
        return "skipped", reason or f"rank(s) {bad}: backend {self.backend} rejected {case.op} {case.dtype}"

    def _run_and_check(self, case: Case, ctx: GroupCtx, bufs: dict) -> tuple[int, str]:
        op, dtype = get_op(case.op), DTYPE_MAP[case.dtype]
        try:
            op.run(bufs, ctx)
            self.device.synchronize()
        except (RuntimeError, TypeError, ValueError) as exc:
            low = str(exc).lower()
            if isinstance(exc, dist.DistNetworkError) or "timed out" in low or "connection" in low:
                raise  # a peer died or hung: that is a failed sweep, not an unsupported dtype
            return 1, f"{self.backend} does not support {case.op} on {case.dtype}: {str(exc).splitlines()[0][:160]}"
        if self.fault and self.fault.kind == "corrupt" and self.fault.rank == self.denv.rank and self.fault.case == case.index:
            for t in bufs.values():
                t.zero_()
        err = op.check(bufs, ctx, case.count, dtype)
        if err:
            return 2, f"wrong result on rank {self.denv.rank}: {err}"
        return 0, ""

    def _barrier(self, ctx: GroupCtx) -> Callable[[], None]:
        def barrier() -> None:
            # The backend's own barrier (nccl: on the device bound at init), as a hand-written loop would use.
            dist.barrier(group=ctx.group)
        return barrier

    def _graph_probe(self, run: Callable[[int], object], in_group: bool) -> bool:
        ok = 1.0
        if in_group and self.graph_capable:
            try:
                stream = torch.cuda.Stream(self.device.torch)
                stream.wait_stream(torch.cuda.current_stream(self.device.torch))
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, stream=stream):
                    run(0)
                del graph
            except Exception:  # capture unsupported for this op/backend: fall back to a queue
                ok = 0.0
            self.device.synchronize()
        elif not self.graph_capable:
            ok = 0.0
        # Capture only enqueues, so a failure on one rank cannot strand a peer; agree before replaying.
        return self.graph_capable and -self._world_max([-ok])[0] > 0.5

    def _time(self, case: Case, ctx: GroupCtx | None) -> tuple[list[tuple[str, str, list[float]]], str]:
        """([(mode, method, MAX-over-ranks samples)] for the pipelined and blocking modes, skip reason)."""
        op, dtype, cfg, dev = get_op(case.op), DTYPE_MAP[case.dtype], self.cfg, self.device
        in_group = ctx is not None
        if in_group:
            free_b, _ = dev.memory_bytes()
            per_set = 3 * case.size_bytes + 64
            nsets = timing.rotation_count(per_set, 32 << 20, free_b // 4, lo=2, hi=4)
            try:
                sets = [op.make_buffers(case.count, ctx, dtype, dev.torch, "random") for _ in range(nsets)]
            except torch.OutOfMemoryError:
                sets = []
        # Out of memory is a recorded skip, agreed by all ranks before anyone enters a collective.
        oom = self._gather_ints([1 if in_group and not sets else 0])[:, 0].tolist()
        if max(oom):
            return [], f"out of memory allocating the timing inputs on rank(s) {[r for r, f in enumerate(oom) if f]}"
        if in_group:
            def run(i: int) -> None:
                op.run(sets[i % nsets], ctx)
            barrier = self._barrier(ctx)
        else:
            def run(i: int) -> None:
                return None
            barrier = None
        timer = timing.RankTimer(dev, cfg, self._world_max, barrier, active=in_group)

        self.phase = f"warm-up of case {case.index}"
        i = timer.warmup(run)
        use_graph = self._graph_probe(run, in_group)
        out = []
        self.phase = f"timing of case {case.index}"
        if use_graph:
            samples, method = timer.graph(run, start=i), "graph"
        else:
            samples, method = timer.queue(run, start=i), ("queue" if dev.has_events else "host-queue")
        out.append(("pipelined", method, samples))
        out.append(("blocking", "events" if dev.has_events else "host", timer.eager(run, start=i)))
        if op.round_trip:
            out = [(m, meth, [s / 2 for s in xs]) for m, meth, xs in out]
        return out, ""

    def _params(self, case: Case, mode: str | None) -> dict:
        g = self.groups[case.group_id]
        return {
            "size_bytes": case.size_bytes, "requested_bytes": case.requested_bytes, "count": case.count,
            "group_size": g.size, "group_ranks": "-".join(map(str, g.ranks)), "scope": g.scope,
            "world_size": self.denv.world_size, "nodes": self.denv.nodes, "backend": self.backend,
            "mode": mode or "", "busbw_factor": get_op(case.op).busbw_factor(g.size),
        }

    def _case_id(self, case: Case, mode: str) -> str:
        g = self.groups[case.group_id]
        return f"{case.dtype}.{case.size_bytes}B.g{g.size}.{g.scope}.{mode}"

    def run_case(self, case: Case, rs: ResultSet) -> None:
        desc = f"case {case.index} ({case.op} {case.dtype} {case.size_bytes} B group {self.groups[case.group_id].ranks})"
        self._inject(case, "start")
        self.phase = f"pre-flight of {desc}"
        self._preflight(case)
        ctx = self._ctx(case.group_id)
        self.phase = f"correctness check of {desc}"
        status, reason = self._check(case, ctx)
        timed: list = []
        if status == "ok":
            timed, reason = self._time(case, ctx)
            status = "skipped" if reason else "ok"
        if status != "ok":
            for mode in ("pipelined", "blocking"):
                rs.add_skip(op=case.op, case=self._case_id(case, mode), params=self._params(case, mode),
                            dtype=case.dtype, reason=reason, status=status)
            if self.progress:
                self.progress(f"[{case.index + 1}/{self._n}] {case.op} {case.dtype} {fmt_bytes(case.size_bytes)} "
                              f"g{self.groups[case.group_id].size}: {status}: {reason}")
            return
        for mode, method, samples in timed:
            stats = timing.Stats.from_samples(samples)
            params = self._params(case, mode)
            algbw = case.size_bytes / stats.median_s if stats.median_s > 0 else 0.0
            params["algbw_bytes_per_s"] = algbw
            params["busbw_bytes_per_s"] = algbw * params["busbw_factor"]
            note = (f"noisy: IQR/median = {stats.iqr_s:.3g}/{stats.median_s:.3g} = {stats.rel_iqr:.1%}"
                    if stats.noisy else "")
            rs.add_stats(op=case.op, case=self._case_id(case, mode), params=params, dtype=case.dtype,
                         figure="max_over_ranks", method=method, stats=stats, bytes_moved=case.size_bytes, note=note)
            if self.progress:
                self.progress(f"[{case.index + 1}/{self._n}] {case.op} {case.dtype} {fmt_bytes(case.size_bytes)} "
                              f"g{params['group_size']} {params['scope']} {mode}: {stats.median_s * 1e6:.1f} us, "
                              f"busbw {params['busbw_bytes_per_s'] / 1e9:.3g} GB/s ({method})")

    def sweep(self, ops: tuple[str, ...], dtypes: tuple[str, ...], sizes_bytes: tuple[int, ...],
              env: dict | None = None) -> ResultSet:
        """Run every case; every rank returns the same rows (only rank 0 should write them)."""
        if not self.groups:
            self.setup_groups()
        cases = plan_cases(ops, dtypes, sizes_bytes, self.groups)
        self._n = len(cases)
        rs = ResultSet(suite="collectives", env=dict(env or {}))
        if self.progress:
            self.progress(f"collectives: {len(cases)} cases on {len(self.groups)} group(s) "
                          f"{[g.ranks for g in self.groups]}, world {self.denv.world_size}, backend {self.backend}")
        for case in cases:
            self.run_case(case, rs)
        self.phase = "end of sweep"
        return rs
