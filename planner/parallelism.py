"""The five parallel degrees of one layout, their group scopes, validation and label, in one value.

    from accelcal.planner.parallelism import Parallelism
    p = Parallelism(tp=8, pp=2, dp=4, ep=8, tp_scope="intra_node", pp_scope="inter_node")
    p.label, p.devices            # ('TP8 PP2 DP4 EP8', 64)
    Parallelism(tp=0)             # ValueError: parallelism: tp must be an integer >= 1, got 0

Devices are numbered replica x (tp x pp) + stage x tp + rank: TP groups are
innermost, then pipeline stages, then data-parallel replicas; EP groups span
ep / tp replicas' TP groups, SP groups span sp replicas (prefill only).
"""

from __future__ import annotations

from dataclasses import dataclass

from accelcal.vocab import SCOPES

__all__ = ["DEGREES", "Parallelism", "expert_tp", "layout_label"]

DEGREES: tuple[str, ...] = ("tp", "pp", "dp", "ep", "sp")
"""The parallel degrees, in label order."""


def expert_tp(tp: int, ep: int, moe_tp: int = 0) -> int:
    """How many ways each routed expert's FFN is split: ``moe_tp`` where given (experts TP-split over a group wider
    than TP: vLLM's default for data-parallel MoE, the expert layers one (DP x TP) tensor-parallel group), else
    ``tp`` (EP 1: every expert TP-split), ``tp / ep`` for an EP degree dividing ``tp`` (the experts spread over
    ``ep`` subgroups of the TP group and TP-split inside each, TensorRT-LLM moe_tp_size x moe_ep_size = tp_size,
    SGLang moe_tp_size = tp_size / ep_size), else 1 (whole experts: EP equal to TP, or spanning attention
    data-parallel replicas)."""
    if moe_tp:
        return moe_tp
    return tp // ep if tp % ep == 0 else 1


def layout_label(tp: int, pp: int, dp: int | None, ep: int = 1, moe_tp: int = 0, sp: int = 1) -> str:
    """``TP8 PP1 DP1`` plus ``EPn`` (ep > 1), ``MoE-TPn`` (experts TP-split over more than the TP group) and ``SPn``
    (sp > 1); ``dp`` None leaves DP out (one model copy's split)."""
    moe = f" MoE-TP{moe_tp}" if moe_tp and moe_tp != tp else ""
    return (f"TP{tp} PP{pp}" + (f" DP{dp}" if dp is not None else "") + (f" EP{ep}" if ep > 1 else "") + moe
            + (f" SP{sp}" if sp > 1 else ""))


@dataclass(frozen=True)
class Parallelism:
    """How a model is spread over devices: five degrees and where each communication group sits."""

    tp: int = 1
    """Tensor-parallel degree (heads, FFN and experts split this many ways)."""
    pp: int = 1
    """Pipeline stages (layers split into this many consecutive groups)."""
    dp: int = 1
    """Data-parallel replicas of the TP x PP model."""
    ep: int = 1
    """Expert-parallel degree (MoE): experts split over this many devices (or device groups: an EP degree below TP
    divides it, each group TP-splitting its experts, :func:`expert_tp`); 1 = experts TP-split."""
    sp: int = 1
    """Sequence-parallel degree (prefill): a prompt split over this many replicas."""
    tp_scope: str = "intra_node"
    """Worst scope of the TP groups (``intra_node`` or ``inter_node``)."""
    pp_scope: str = "intra_node"
    """Worst scope of the pipeline-stage boundaries."""
    ep_scope: str = "intra_node"
    """Worst scope of the EP all-to-all groups."""
    sp_scope: str = "intra_node"
    """Worst scope of the SP KV all-gather groups."""
    moe_tp: int = 0
    """Ways each routed expert is TP-split when that group is wider than TP (``tp`` x k, with ``ep`` 1: the
    experts TP-split over k data-parallel replicas whose attention runs apart); 0 = as ``tp`` and ``ep`` imply
    (:func:`expert_tp`)."""

    def __post_init__(self) -> None:
        for f in DEGREES:
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"parallelism: {f} must be an integer >= 1, got {v!r}")
        if not isinstance(self.moe_tp, int) or isinstance(self.moe_tp, bool) or self.moe_tp < 0:
            raise ValueError(f"parallelism: moe_tp must be an integer >= 0 (0: as tp and ep imply), got {self.moe_tp!r}")
        if self.moe_tp and (self.moe_tp % self.tp or self.ep != 1):
            raise ValueError(f"parallelism: moe_tp {self.moe_tp} splits every expert over tp x k devices with ep 1; "
                             f"got tp {self.tp}, ep {self.ep} ({self.moe_tp} % {self.tp} = {self.moe_tp % self.tp})")
        for f in ("tp_scope", "pp_scope", "ep_scope", "sp_scope"):
            if getattr(self, f) not in SCOPES:
                raise ValueError(f"parallelism: {f} must be one of {list(SCOPES)}, got {getattr(self, f)!r}")

    @classmethod
    def with_scopes(cls, tp: int, pp: int, dp: int, ep: int, sp: int, scopes: dict[str, str]) -> "Parallelism":
        """From the degrees and a ``{"tp": scope, "pp": ..., "ep": ..., "sp": ...}`` mapping (missing: intra_node)."""
        return cls(tp, pp, dp, ep, sp, **{f"{k}_scope": v for k, v in scopes.items()})

    @property
    def expert_tp(self) -> int:
        """Ways each routed expert is TP-split (:func:`expert_tp`)."""
        return expert_tp(self.tp, self.ep, self.moe_tp)

    @property
    def moe_group(self) -> int:
        """Devices one MoE layer spans: expert_tp x ep (TP, or more where attention-DP replicas share it)."""
        return self.expert_tp * self.ep

    @property
    def moe_replicas(self) -> int:
        """Replicas whose tokens meet in one MoE layer: moe_group / tp (1 unless attention runs data-parallel)."""
        return max(1, self.moe_group // self.tp)

    @property
    def devices(self) -> int:
        """Devices used: tp x pp x dp."""
        return self.tp * self.pp * self.dp

    @property
    def scopes(self) -> dict[str, str]:
        return {"tp": self.tp_scope, "pp": self.pp_scope, "ep": self.ep_scope, "sp": self.sp_scope}

    @property
    def label(self) -> str:
        """``TP8 PP2 DP4`` plus ``EPn`` / ``MoE-TPn`` / ``SPn`` when used (:func:`layout_label`)."""
        return layout_label(self.tp, self.pp, self.dp, self.ep, self.moe_tp, self.sp)

    @property
    def model_label(self) -> str:
        """The label without DP (how one model copy is split), for layouts rejected before DP is chosen."""
        return layout_label(self.tp, self.pp, None, self.ep, self.moe_tp, self.sp)


