"""One decoder layer's predicted time, exactly as the planner's search costs it.

    from accelcal.calibrate.profile import Profile
    from accelcal.models import ModelConfig
    from accelcal.planner.predict import predict_layer_time_s
    pred = predict_layer_time_s(Profile.load("profiles/node.yaml"), ModelConfig.from_name("llama3-8b"),
                                "decode", batch=8, q_len=1, kv_len=2048, tp=1)
    print(pred.total_s, pred.breakdown)            # breakdown: compute/memory/communication/launch
    for n in pred.nodes: print(n.name, n.device_s, n.source)

validate/ compares this with real torch layers.  It builds the DAG with
:func:`accelcal.planner.dag.build_layer_dag` and costs it with
:class:`accelcal.planner.cost.Coster`, the same two calls the search makes.
The TP group is taken to sit inside one node (``intra_node`` collectives).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from accelcal.calibrate.profile import ProfileQueries
from accelcal.models import ModelConfig

from .cost import NodeCost, model_coster
from .dag import DagOptions, build_layer_dag
from .parallelism import Parallelism

__all__ = ["LayerPrediction", "MoeOptions", "predict_layer_time_s"]


@dataclass(frozen=True)
class MoeOptions:
    """How a MoE layer is spread (ignored for dense models)."""

    ep: int = 1
    """Expert-parallel degree; 1 = every device holds every expert, TP-split."""
    ep_scope: str = "intra_node"
    """Scope of the EP all-to-all."""
    imbalance: float | None = None
    """Max/mean expert load per EP rank; None = computed from the routing statistics."""


@dataclass
class LayerPrediction:
    """Predicted cost of one decoder layer on one device."""

    total_s: float
    """Layer time, seconds (device time + launch overhead not hidden)."""
    breakdown: dict[str, float]
    """Seconds per category: compute, memory, communication, launch."""
    nodes: list[NodeCost] = field(default_factory=list)
    """Every costed node, with its profile source."""
    extrapolated: list[str] = field(default_factory=list)
    """Nodes the profile answered outside its measured range."""


def predict_layer_time_s(profile: ProfileQueries, model: ModelConfig | str, phase: str, batch: int, q_len: int,
                         kv_len: int, tp: int = 1, cuda_graphs: bool = False,
                         moe: MoeOptions | dict | None = None,
                         implementation: str | None = None) -> LayerPrediction:
    """Cost of one decoder layer (``phase`` prefill|decode) as the planner costs it.

    ``implementation`` names the kernel-count preset (``fused``, the planner's
    default, or ``torch-eager``; see :mod:`accelcal.models.implementation`).
    """
    model = ModelConfig.resolve(model)
    if isinstance(moe, dict):
        moe = MoeOptions(**moe)
    moe = moe or MoeOptions()
    model.require_tp_divides_heads(tp)
    par = Parallelism(tp=tp, ep=moe.ep if model.is_moe else 1, ep_scope=moe.ep_scope)
    coster, dag_model = model_coster(profile, model, cuda_graphs=cuda_graphs)  # fp8 weights: as the planner runs them
    options = DagOptions(moe_imbalance=moe.imbalance, gemm_input_quant=dag_model.weight_dtype != model.weight_dtype)
    costed = coster.cost_dag(build_layer_dag(dag_model, phase, batch, q_len, kv_len, par, implementation, options),
                             dag_model.weight_bytes_per_elem)
    return LayerPrediction(costed.total_s, costed.breakdown, costed.nodes, costed.extrapolated)
