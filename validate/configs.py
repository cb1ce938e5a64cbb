"""Validation cases as data: which layers, shapes and layouts `accelcal validate` measures.

    from accelcal.validate.configs import default_cases, ranking_cases
    for case in default_cases(device_type="cpu", models=["tiny"], quick=True, nproc=2):
        print(case.name, case.phase, case.batch, case.q_len, case.kv_len, case.tp, case.graphs)

A case is one decoder layer forward: ``prefill`` runs ``q_len == kv_len``
prompt tokens per sequence (causal); ``decode`` runs one new token per sequence
against a KV cache, attending ``kv_len`` positions in all (``kv_len - 1``
cached tokens plus the new one).  ``batch`` is the global batch: with ``dp``
replicas each runs ``batch // dp`` sequences.  Models are the planner's presets
(``accelcal.models.ModelConfig.from_name``): on the CPU ``small`` and
``small-moe``, whose layer weights (50 MB and 113 MB in fp32) exceed the
last-level cache as a real model's do, while a case still runs well under a
second; Llama-3-8B-sized layers on a GPU.  ``tiny`` (3 MB of layer weights)
runs from cache: `accelcal validate` says so when it is used.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["Case", "SHAPES", "DEFAULT_MODELS", "default_cases", "ranking_cases"]


@dataclass(frozen=True)
class Case:
    """One measured layer forward and the layout it runs in."""

    model: str
    """Planner model preset name (``tiny``, ``llama3-8b``, ...)."""
    phase: str
    """``prefill`` or ``decode``."""
    batch: int
    """Global batch (sequences); each of ``dp`` replicas runs ``batch // dp``."""
    q_len: int
    """New tokens per sequence: the prompt length for prefill, 1 for decode."""
    kv_len: int
    """Positions attended per sequence, the new tokens included."""
    tp: int = 1
    """Tensor-parallel ranks the layer is sharded over (all-reduce after attention and MLP)."""
    dp: int = 1
    """Data-parallel replicas running concurrently, one per rank (ranking check only)."""
    graphs: bool = False
    """Replay from a device graph (CUDA graphs) instead of eager launches."""

    def __post_init__(self) -> None:
        if self.phase not in ("prefill", "decode"):
            raise ValueError(f"case phase must be 'prefill' or 'decode', got {self.phase!r}")
        for name in ("batch", "q_len", "kv_len", "tp", "dp"):
            if getattr(self, name) < 1:
                raise ValueError(f"case {name} must be >= 1, got {getattr(self, name)}")
        if self.phase == "decode" and self.q_len != 1:
            raise ValueError(f"decode cases run one new token: q_len must be 1, got {self.q_len}")
        if self.phase == "prefill" and self.q_len != self.kv_len:
            raise ValueError(f"prefill attends its own prompt: q_len({self.q_len}) must equal kv_len({self.kv_len})")
        if self.batch % self.dp:
            raise ValueError(f"batch({self.batch}) % dp({self.dp}) = {self.batch % self.dp}, must be 0")

    @property
    def replica_batch(self) -> int:
        """Sequences one replica (one rank, or one TP group) runs."""
        return self.batch // self.dp

    @property
    def ranks(self) -> int:
        return self.tp * self.dp

    @property
    def name(self) -> str:
        shape = f"b{self.batch}_s{self.q_len}" if self.phase == "prefill" else f"b{self.batch}_kv{self.kv_len}"
        layout = f"tp{self.tp}" + (f"_dp{self.dp}" if self.dp > 1 else "")
        return f"{self.model}.{self.phase}.{shape}.{layout}.{'graph' if self.graphs else 'eager'}"

    def to_dict(self) -> dict:
        return asdict(self)


# (phase, batch, prompt or KV length) per device type; quick runs take the first of each phase.
SHAPES: dict[str, dict[str, list[tuple[int, int]]]] = {
    "cpu": {
        "prefill": [(1, 64), (2, 128), (4, 256)],
        "decode": [(1, 256), (8, 512), (32, 1024)],
    },
    "gpu": {
        "prefill": [(1, 512), (4, 1024), (1, 4096), (8, 2048)],
        "decode": [(1, 1024), (16, 2048), (64, 4096), (128, 1024)],
    },
}
"""(batch, length) grid: prompt length for prefill, attended KV length for decode."""

QUICK_SHAPES = 2
"""Shapes per phase in a ``--quick`` run."""

TP_SHAPES = 1
"""Shapes per phase measured at TP=k (they start k ranks, so fewer)."""

DEFAULT_MODELS: dict[str, list[str]] = {
    "cpu": ["small", "small-moe"],
    "gpu": ["llama3-8b", "mixtral-8x7b"],
}
"""Models validated by default per device type (first one is the dense model used for TP)."""


def _kind(device_type: str) -> str:
    return "cpu" if device_type == "cpu" else "gpu"


def _shape_cases(model: str, kind: str, n: int, **layout) -> list[Case]:
    out = []
    for phase in ("prefill", "decode"):
        for batch, length in SHAPES[kind][phase][:n]:
            q = length if phase == "prefill" else 1
            out.append(Case(model=model, phase=phase, batch=batch, q_len=q, kv_len=length, **layout))
    return out


def default_cases(device_type: str, models: list[str] | None = None, quick: bool = False, nproc: int = 1,
                  has_graphs: bool = False, moe_models: set[str] | None = None, shapes: int | None = None) -> list[Case]:
    """The validation grid for a device type.

    Single-rank cases for every model (eager, plus graph replay where the
    backend has graphs; ``shapes`` per phase, default 2 with ``quick``, else
    all), and with ``nproc > 1`` TP=nproc cases for the dense
    models.  ``moe_models`` names the MoE ones (kept at TP=1: expert layouts
    are the planner's EP business, not a plain TP shard; and eager only).
    """
    kind = _kind(device_type)
    models = models or DEFAULT_MODELS[kind]
    moe_models = moe_models or set()
    most = len(SHAPES[kind]["prefill"])
    if shapes is not None and not 1 <= shapes <= most:
        raise ValueError(f"shapes per phase must be between 1 and {most} for {kind}, got {shapes}")
    n = shapes or (QUICK_SHAPES if quick else most)
    cases: list[Case] = []
    for model in models:
        cases += _shape_cases(model, kind, n)
        if has_graphs and model not in moe_models:
            # The MoE layer gathers each expert's tokens with data-dependent
            # shapes (nonzero), which a CUDA graph cannot capture.
            cases += _shape_cases(model, kind, n, graphs=True)
    if nproc > 1:
        for model in models:
            if model not in moe_models:
                cases += _shape_cases(model, kind, TP_SHAPES, tp=nproc)
    return cases


RANKING_SHAPES: dict[str, tuple[int, int]] = {"prefill": (4, 128), "decode": (8, 512)}
"""(global batch, length) the TP=2 vs TP=1 x DP=2 ranking check runs."""


def ranking_cases(model: str = "tiny", ranks: int = 2) -> dict[str, list[Case]]:
    """Per phase, the two layouts of ``ranks`` devices the ranking check compares."""
    out: dict[str, list[Case]] = {}
    for phase, (batch, length) in RANKING_SHAPES.items():
        q = length if phase == "prefill" else 1
        out[phase] = [
            Case(model=model, phase=phase, batch=batch, q_len=q, kv_len=length, tp=ranks),
            Case(model=model, phase=phase, batch=batch, q_len=q, kv_len=length, dp=ranks),
        ]
    return out
