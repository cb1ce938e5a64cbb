"""What the planner asks of a profile, as a typed protocol (a :class:`Profile` satisfies it).

    from accelcal.calibrate.profile import Profile, ProfileQueries
    p: ProfileQueries = Profile.load("profiles/datasheet/h100-sxm.yaml")
    p.collective_time_s("all_reduce", 2**20, 8, "intra_node").time_s

Every query returns an :class:`Estimate` or raises :class:`MissingMeasurement`
(a :class:`ProfileQueryError`) when the profile has no data to answer it;
``elementwise_time_s`` raising it means "fall back on ``memory_time_s``".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .provenance import Identity
    from .profile import Estimate

__all__ = ["ProfileQueries"]


class ProfileQueries(Protocol):
    """The queries planner/ makes; anything with these methods can be planned with."""

    identity: "Identity"
    """Provenance: the planner reads ``name``, ``device_name``, ``device_type``, ``devices_per_node`` and
    ``memory_capacity_bytes``."""

    def dtypes(self) -> list[str]:
        """Dtypes with GEMM data."""
        ...

    def gemm_time_s(self, m: int, n: int, k: int, dtype: str, weight_bytes_per_elem: float | None = None) -> "Estimate":
        ...

    def grouped_source_dtype(self, dtype: str) -> str | None:
        ...

    def grouped_gemm_time_s(self, experts: int, m: int, n: int, k: int, dtype: str,
                            weight_bytes_per_elem: float | None = None) -> "Estimate":
        ...

    def memory_time_s(self, nbytes: float, pattern: str = "copy") -> "Estimate":
        ...

    def elementwise_time_s(self, group: str, nbytes: float, dtype: str) -> "Estimate":
        ...

    def sampler_time_s(self, kind: str, logits: float) -> "Estimate":
        ...

    def roofline_time_s(self, flop: float, nbytes: float, dtype: str) -> "Estimate":
        ...

    def attention_time_s(self, phase: str, batch: int, q_len: int, kv_len: int, heads: int, kv_heads: int,
                         head_dim: int, dtype: str, causal: bool = True, kv_dtype: str | None = None,
                         v_head_dim: int | None = None, shared_kv: bool = False, window: int = 0) -> "Estimate":
        ...

    def attention_mixed_time_s(self, decode_kv_lens, chunks, heads: int, kv_heads: int, head_dim: int,
                               dtype: str) -> "Estimate":
        """One continuous-batching step: decode batch plus prefill chunks [(q_len, context_len)]."""
        ...

    def collective_time_s(self, op: str, nbytes: float, group_size: int, scope: str = "intra_node",
                          kernel: str | None = None) -> "Estimate":
        ...

    def launch_overhead_s(self, mode: str = "eager") -> "Estimate":
        ...
