"""Eager layers on an accelerator are costed at the measured per-op host cost of a real layer's op mix."""

import dataclasses

import pytest

from accelcal.calibrate.profile import Profile
from accelcal.models import ModelConfig
from accelcal.planner.predict import predict_layer_time_s


def _decode(p, model):
    return predict_layer_time_s(p, model, "decode", 1, 1, 1024, implementation="torch-eager")


def test_accelerator_eager_uses_dispatch_cost_and_falls_back():
    measured = Profile.load("profiles/nvidia-h200.yaml")
    assert measured.overheads.eager_dispatch_s is not None  # measured since the 2026-12-04 run
    # without the field (profiles measured before it existed) the dispatch cost falls back to the eager launch
    p = dataclasses.replace(measured, overheads=dataclasses.replace(measured.overheads, eager_dispatch_s=None))
    model = ModelConfig.from_name("llama3-8b")
    est = p.launch_overhead_s("dispatch")
    assert est.time_s == p.overheads.eager_launch_s and "not measured" in est.detail
    # ...flagged, and said where the figures use it: the plan's extrapolated answers, predict's notes
    assert est.extrapolated and "fallback" in est.flags and not measured.launch_overhead_s("dispatch").extrapolated
    assert any(x.startswith("launch: overheads.eager_dispatch_s (an eager layer's op-mix dispatch cost) not measured")
               for x in _decode(p, model).extrapolated)
    from accelcal.planner.serving.predict import predict_serving

    kw = dict(concurrency=1, isl=256, osl=8, num_requests=2)
    note = "eager steps (prefill and mixed; decode batches without a captured graph): overheads.eager_dispatch_s"
    assert any(n.startswith(note) for n in predict_serving(p, model, "vllm", **kw).notes)
    assert not any(n.startswith(note) for n in predict_serving(measured, model, "vllm", **kw).notes)
    before = _decode(p, model)
    q = dataclasses.replace(p, overheads=dataclasses.replace(p.overheads, eager_dispatch_s=3 * p.overheads.eager_launch_s))
    after = _decode(q, model)
    kernels = sum(n.kernels for n in after.nodes)
    # Host-bound: the layer takes the host's issue time of its kernels at the dispatch cost.
    assert after.total_s == pytest.approx(max(kernels * 3 * p.overheads.eager_launch_s,
                                              after.total_s - after.breakdown["launch"]), rel=1e-6)
    assert after.total_s > before.total_s
    # CUDA graphs do not dispatch per op.
    g = dict(implementation="torch-eager", cuda_graphs=True)
    assert predict_layer_time_s(q, model, "decode", 1, 1, 1024, **g).total_s == \
        pytest.approx(predict_layer_time_s(p, model, "decode", 1, 1, 1024, **g).total_s)


def test_cpu_eager_costing_unchanged():
    p = Profile.load("profiles/cpu-amd-epyc-2core.yaml")
    model = ModelConfig.from_name("small")
    q = dataclasses.replace(p, overheads=dataclasses.replace(p.overheads, eager_dispatch_s=1e-3))
    assert _decode(q, model).total_s == pytest.approx(_decode(p, model).total_s)
