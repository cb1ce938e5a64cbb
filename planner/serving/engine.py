"""Serving-engine presets as data: each value with the engine default it comes from.

    from accelcal.planner.serving.engine import EnginePreset, engine_names
    e = EnginePreset.from_name("vllm")           # planner/serving/presets/*.yaml
    print(e.token_budget, e.mixed_steps, e.sources["token_budget"])

Every key of a preset file is ``{value: ..., source: "..."}``; a missing source,
an unknown key or a wrong type is an error naming the file and key.  A default
that changed in a later release is listed under ``since`` (``- version: "0.14.0"``
then keys as above); :meth:`EnginePreset.for_version` applies the entries up to a
version, and an empty version means the newest.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from accelcal.filekinds import wrong_file_hint
from accelcal.safe_io import load_yaml
from accelcal.vocab import EP_COMMS, QK_NORM_KERNELS, SAMPLER_BYTES_PER_LOGIT

__all__ = ["EnginePreset", "check_version", "engine_names", "release_range_notes", "sizes_text", "version_key"]

PRESET_DIR = Path(__file__).with_name("presets")

_NOT_KEYS = ("sources", "since", "device_rules", "layout_attention_dp")
"""EnginePreset fields a preset file or an override does not set as keys (citations, the release and device
lists, the layout a preset was resolved for)."""


def version_key(v: str) -> tuple[int, ...]:
    """Comparable version tuple ("0.5.1.post1" -> (0, 5, 1, 0, 1), "1.0.0rc3" -> (1, 0, 0, 3), "0.12" -> (0, 12, 0),
    the same release as 0.12.0); an empty version sorts after every release (the newest rules).  A pre-release sorts
    after its release (1.0.0rc3 > 1.0.0): the rules and ``since`` entries compare at minor or patch level, where
    that never matters."""
    if not str(v).strip():
        return (1 << 30,)
    out = []
    for part in str(v).replace("rc", ".").replace("post", ".").split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out + [0] * (3 - len(out)))


_RELEASE = re.compile(r"v?\d+(\.\d+)*(rc\d+)?(\.?post\d+)?(\.?dev\d+)?")
"""A release number as engines publish them: 0.12.0, 1.0.0rc3, 0.5.1.post1, 1.2.0rc6.post1 (a leading v allowed)."""


def check_version(v: str, flag: str = "--engine-version") -> str:
    """``v`` stripped, when empty (the newest rules) or a release number; else a ValueError naming ``flag``."""
    v = str(v).strip()
    if v and not _RELEASE.fullmatch(v):
        raise ValueError(f"{flag} {v!r}: expected a release number such as 0.12.0, 1.0.0rc3 or 0.5.1.post1 "
                         f"(empty: the newest documented release)")
    return v


@dataclass(frozen=True)
class EnginePreset:
    """How one serving engine schedules steps and sizes its KV pool."""

    name: str
    """Preset name (vllm, sglang, trtllm, static)."""
    version: str
    """Engine version(s) the defaults were read for."""
    batching: str
    """continuous (iteration-level) or static (a batch admitted together, decoded in lockstep)."""
    token_budget: int
    """Tokens one step may process (max_num_batched_tokens / chunked_prefill_size / max_num_tokens); 0 = unlimited."""
    max_seqs: int
    """Sequences one step may hold (max_num_seqs / max_running_requests / max_batch_size)."""
    chunked_prefill: bool
    """A prompt longer than the budget left is split over steps (else it waits for a step with room)."""
    mixed_steps: bool
    """Prefill chunks and decodes share one step (else a prefill step pauses decode)."""
    priority: str
    """Who takes a mixed step's token budget first: decode_first (the running requests, decoding or finishing a
    chunked prompt, then new prompts) or prefill_first (prompts, then decodes with what is left).  Separate prefill
    steps (mixed_steps false) do not read it: a prefill batch runs whenever one can be formed (SGLang)."""
    cuda_graphs: bool
    """Decode-only steps replay CUDA graphs when their batch is a captured size (or padded to one)."""
    cuda_graph_sizes: tuple[int, ...]
    """Captured decode batch sizes; a larger batch runs eager (at a small TP, see ``small_tp_below``, only those up to
    ``small_tp_cuda_graph_max_batch``)."""
    block_size_tokens: int
    """Tokens per KV block (page)."""
    memory_fraction: float
    """gpu_memory_utilization / free_gpu_memory_fraction / mem_fraction_static; 0 when computed by the engine's own
    rule (SGLang's, unless given)."""
    memory_fraction_of: str
    """total | free_after_weights | sglang_reserved_rule | sglang_tier_reserve: what memory_fraction is a fraction
    of (the SGLang rules compute the fraction themselves: accelcal.planner.serving.kv)."""
    reserve_activations: bool
    """The engine subtracts a forward pass's peak activations (at the token budget) before sizing KV."""
    reserve_fixed_bytes: float
    """Further bytes reserved per device (CUDA-graph pool, collective buffers) where the engine documents them."""
    kv_full: str
    """What a full KV pool does: preempt (evict and recompute the latest-started running request; with admission
    current_length or reserve_ratio) or queue (new requests wait for room; with admission full_request, which has
    reserved every block a running request will need)."""
    admission: str
    """current_length (blocks for the tokens computed so far), full_request (prompt + output reserved up front)
    or reserve_ratio (SGLang: prompt + whole output must fit beside the running requests' remaining output x new_token_ratio)."""
    overlap_scheduling: bool = False
    """The host schedules step n+1 while step n runs on the device (TensorRT-LLM's overlap scheduler, SGLang's
    overlap schedule, vLLM's async scheduling): a request that reaches the engine during step n first runs in
    step n+2, and a request that finishes in step n still holds its slot and KV (one wasted decode) in step n+1."""
    token_budget_at_least_seqs: bool = False
    """The engine refuses to start with a token budget below max_seqs (vLLM: every running sequence needs a token
    of the step); False: not checked."""
    overlap_scheduling_max_pp: int = 0
    """Largest pipeline-parallel degree the engine keeps overlap scheduling on for; a wider PP runs without it
    (vLLM turns async scheduling off with PP > 1).  0 = any degree."""
    small_tp_below: int = 0
    """TP degrees below this capture fewer decode batch sizes (``small_tp_cuda_graph_max_batch``); 0 = every TP
    captures ``cuda_graph_sizes``."""
    small_tp_cuda_graph_max_batch: int = 0
    """At a TP below ``small_tp_below``, the largest captured decode batch (SGLang: cuda_graph_max_bs 256 below TP 4,
    512 from it); 0 = no cap.  Sizes given explicitly (an override of ``cuda_graph_sizes``) are captured as given.
    With attention data parallelism the TP compared is the engine's whole group, the replicas' TP x their number
    (SGLang's tp_size)."""
    attention_dp_splits_token_budget: bool = False
    """With attention data parallelism over k replicas, each replica's steps take token_budget // k tokens
    (SGLang divides chunked_prefill_size by dp_size); False: each replica keeps the whole budget."""
    attention_dp_new_token_ratio_scale: float = 1.0
    """With attention data parallelism, new_token_ratio_init and _min are multiplied by this (SGLang scales its
    schedule_conservativeness by 0.3); 1 = unchanged."""
    layout_attention_dp: int = 1
    """Not a preset key: the attention data-parallel replicas sharing one MoE group in the layout this preset was
    resolved for (``for_layout``); 1 = none."""
    tp_all_reduce_kernel: str = ""
    """The engine's own all-reduce for tensor-parallel groups inside a node, named as the profile's collective
    entries name it (``kernel``: vllm_custom_ar, trtllm_custom_ar); empty = the collective library (NCCL).  A
    profile without entries of that kernel answers with the library's (and the estimate says so)."""
    tp_all_reduce_kernel_max_bytes: int = 0
    """Largest message the kernel takes; larger ones go to the library.  0 = no byte limit."""
    tp_all_reduce_kernel_max_tokens: int = 0
    """Largest token count whose all-reduce the kernel takes (an engine that decides by tokens); 0 = no limit."""
    ep_comm: str = "all_to_all"
    """Experts spread over the TP group (``--ep`` = TP): ``all_reduce`` (every rank holds every token, runs its
    own experts and one all-reduce sums them: engines without attention data parallelism) or ``all_to_all``
    (tokens dispatched to the experts' ranks and combined back)."""
    attention_dp_balance_iters: int = 0
    """Attention data parallelism only: hold a replica's new prompts until every replica of its group has some, or
    for at most this many steps, so that the replicas prefill in the same step (TensorRT-LLM attention_dp_config
    enable_balance with timeout_iters; its batching_wait_iters is not modelled).  0 = off."""
    batch_wait_timeout_iters: int = 0
    """Hold new prompts while they and the running requests' decodes come to fewer than
    ``batch_wait_max_tokens_ratio`` x ``token_budget`` tokens, for at most this many steps in a row, so that prompts
    gather into fewer prefill steps (TensorRT-LLM batch_wait_timeout_iters).  Only steps that also decode count and
    hold: an engine with nothing decoding prefills at once.  Without attention data parallelism only, as
    TensorRT-LLM does; a chunked prompt already started is not held (TensorRT-LLM holds it too; its chunked prefill
    is off by default).  0 = off."""
    batch_wait_max_tokens_ratio: float = 0.0
    """The share of ``token_budget`` that ends a hold (``batch_wait_timeout_iters``): a step whose prompt and
    decode tokens reach it prefills at once (TensorRT-LLM batch_wait_max_tokens_ratio, in [0, 1]; 0 = every step
    reaches it, so nothing is held)."""
    host_step_s: float = 0.0
    """Host (CPU) seconds of the engine's own work in every step, whatever its batch (the scheduler pass, preparing
    the inputs, launching the step, handing out its results).  With ``overlap_scheduling`` the host prepares step
    n + 1 while step n runs, so a step lasts the longer of the two; without it host and device take turns and add.
    The kernel suite does not measure an engine's host work, so every preset has 0 (a step is its device time);
    set it from a run of the engine on the node, e.g. TensorRT-LLM's ``print_iter_log``, which logs each
    iteration's wall time on the host (``host_step_time``, waits for the device included) beside the previous
    step's device time (``prev_device_step_time``) and ``num_scheduled_requests``: without overlap scheduling the
    host work is about their difference; with it, host_step_time shows host work only where it exceeds the device
    time.  A straight line of it against num_scheduled_requests gives this key (its intercept) and
    ``host_s_per_seq`` (its slope)."""
    host_s_per_seq: float = 0.0
    """Host seconds each request a step schedules (decoding or prefilling) adds to ``host_step_s``: per-request
    bookkeeping, input preparation and output handling.  0 in every preset, as ``host_step_s``."""
    ep_below_tp: bool = False
    """The engine runs an EP degree that divides TP (``--ep`` below ``--tp``): the experts spread over ``ep`` groups
    of the TP ranks, each TP-splitting its experts (TensorRT-LLM moe_tp_size x moe_ep_size, SGLang --ep-size below
    --tp-size).  False: EP is 1 or the whole TP group (or wider, with attention data parallelism)."""
    moe_block_aligned: bool = False
    """Block-scaled fp8 routed experts load only when each device's slice of an expert is whole blocks (the engine
    refuses the layout otherwise); False: the engine was not read to require it."""
    sampler: str = "argmax"
    """The sampler kind the engine runs by default over each step's logits (sequences x the whole vocabulary:
    the LM head's TP shards are all-gathered first, and every rank samples): one of
    accelcal.vocab.SAMPLER_BYTES_PER_LOGIT, costed from the profile's ``sampler`` section where measured, else
    at the kind's bytes per logit over the copy bandwidth."""
    qk_norm_kernels: int = 2
    """Kernels a model's q/k RMSNorm (Qwen3, MiniMax-M2) takes per layer: 2 (the queries, then the keys) or 1 (one
    kernel for both); models without one are unaffected."""
    rope_in_attention: bool = False
    """RoPE runs inside another kernel, not one of its own: the fused q/k-norm kernel when the model has a q/k
    norm, else the attention op's QKV preprocessing, which also writes the KV cache (TensorRT-LLM)."""
    prefill_batch_tokens: int = 0
    """Tokens one step's prefill may take, when the engine caps it apart from ``token_budget`` (SGLang's
    max_prefill_tokens; its chunked_prefill_size is the token budget); 0 = the token budget alone."""
    cuda_graph_padding: bool = True
    """A decode batch between captured sizes is padded up to the next one (False: runs eager)."""
    in_use_at_start_from_pool: bool = True
    """The device memory already in use when the engine starts (the CUDA context: the profile's
    identity.memory_in_use_at_start_bytes) comes off the KV pool (engines that size the pool from the free memory),
    or, False, out of the headroom the memory fraction leaves (an engine that measures its reserves from a snapshot
    taken after the context exists)."""
    profile_sampler_bytes_per_logit: float = 0.0
    """Device bytes per logit the engine's start-up memory profile holds at its sampler's peak, over
    min(token_budget, max_seqs) dummy sequences x the whole vocabulary (vLLM's profile run ends with a dummy
    top-k/top-p sampler run); with ``reserve_activations`` the activation reserve is the larger of the forward's
    and this.  0 = no such run counted."""
    linear_state_pool: str = "per_sequence"
    """Where a hybrid model's per-sequence linear-attention state lives (models with Gated DeltaNet layers only):
    ``per_sequence`` (each running sequence holds its state in the KV pool, counted as the blocks it fills) or
    ``ratio`` (a pool of its own taking ``linear_state_memory_ratio`` / (1 + ratio) of the memory, which caps the
    running sequences: SGLang)."""
    linear_state_memory_ratio: float = 0.0
    """``linear_state_pool: ratio`` only: state memory / KV memory (SGLang ``mamba_full_memory_ratio``)."""
    linear_state_slots_per_request: int = 1
    """``linear_state_pool: ratio`` only: state slots the pool keeps per running request (SGLang caps the running
    requests at its state slots // this, the rest holding the prefix cache's states)."""
    new_token_ratio_init: float = 0.0
    """reserve_ratio admission only: initial new_token_ratio."""
    new_token_ratio_min: float = 0.0
    """reserve_ratio admission only: floor the ratio decays to."""
    new_token_ratio_decay_steps: int = 1
    """reserve_ratio admission only: decode steps over which the ratio decays from init to min."""
    sources: dict = field(default_factory=dict, compare=False)
    """key -> the documented default (file/URL + version) the value comes from."""
    since: tuple = field(default=(), compare=False)
    """Defaults a later release changed: ((version, {key: value}, {key: source}), ...), oldest first."""
    device_rules: tuple = field(default=(), compare=False)
    """Defaults the engine sets by device: ((when, {key: value}, {key: source}), ...) in file order, ``when`` a
    mapping of conditions that must all hold (memory_gib_from, memory_gib_below: the device's total memory in GiB;
    device_name_contains: a word of its name, any case; since, before: the release); applied by ``for_device``."""

    @classmethod
    def from_name(cls, name: str) -> "EnginePreset":
        path = PRESET_DIR / f"{name}.yaml"
        if not path.is_file():
            raise ValueError(f"unknown engine {name!r}; presets: {', '.join(engine_names())} (or a preset .yaml path)")
        return cls.from_yaml(path)

    @classmethod
    def resolve(cls, spec: "str | Path | EnginePreset") -> "EnginePreset":
        if isinstance(spec, EnginePreset):
            return spec
        s = str(spec)
        return cls.from_yaml(s) if s.endswith((".yaml", ".yml")) else cls.from_name(s)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "EnginePreset":
        path = Path(path)
        data = load_yaml(path, what="engine preset")
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of engine keys")
        known = {f.name: f for f in fields(cls) if f.name not in _NOT_KEYS}
        unknown = sorted(set(data) - set(known) - {"since", "device_rules"})
        if unknown:
            hint = wrong_file_hint(data, "engine")
            if hint:  # a whole other kind of file: what it is says more than the keys it lacks
                raise ValueError(f"{path}: not an engine preset{hint}; --engine takes a preset name "
                                 f"({', '.join(engine_names())}) or a preset .yaml")
            raise ValueError(f"{path}: unknown engine key(s) {unknown}; expected keys from {sorted(known)}")
        kw, sources = {}, {}
        since = _read_since(path, data.pop("since", None), known)
        rules = _read_device_rules(path, data.pop("device_rules", None), known)
        for key, value in data.items():
            if key in ("name", "version"):
                kw[key] = str(value)
                continue
            kw[key], sources[key] = _entry(str(path), key, value, "the engine's documented default")
        missing = sorted(k for k, f in known.items() if k not in kw and f.default is dataclasses_missing())
        if missing:
            raise ValueError(f"{path}: missing engine key(s) {missing}")
        preset = cls(**kw, sources=sources, since=since, device_rules=rules)
        preset._check(path)
        return preset

    def for_version(self, version: str) -> tuple["EnginePreset", list[str]]:
        """(this preset as release ``version`` runs it, one note per changed default); every ``since`` entry up to
        ``version`` applies, and all of them for an empty version (the newest)."""
        out, notes = self, []
        for ver, values, srcs in self.since:
            if version_key(ver) <= version_key(version):
                out = dataclasses.replace(out, **values, sources={**out.sources, **srcs})
                # the citation stays in the preset's sources (JSON: engine_settings.release_defaults)
                notes.extend(f"{self.name} {version or 'newest'}: {k} = {_short(v)} (since {ver})"
                             for k, v in values.items())
        if out is not self:
            out = dataclasses.replace(out, version=str(version) or f"newest ({self.since[-1][0]}+)")
            out._check(f"{self.name} {version}")
        return out, notes

    def for_device(self, capacity_bytes: float, device_name: str, version: str = "") -> tuple["EnginePreset", list[str]]:
        """(this preset as the engine sets itself up on a device of ``capacity_bytes`` total memory named
        ``device_name``, release ``version`` ("" = the newest), one note per rule that changed something).  Apply it
        after ``for_version`` and before a deployment's settings, which it would otherwise overwrite."""
        out, notes = self, []
        gib = float(capacity_bytes) / 2 ** 30
        for when, values, srcs in self.device_rules:
            if not _device_rule_holds(when, gib, str(device_name), version):
                continue
            changed = {k: v for k, v in values.items() if getattr(out, k) != v}
            out = dataclasses.replace(out, **values, sources={**out.sources, **srcs})
            if changed:
                notes.append(f"{self.name} on {device_name or 'this device'} ({gib:.0f} GiB): "
                             + ", ".join(f"{k} = {_short(v)}" for k, v in changed.items())
                             + " (the engine's own default for such a device; cited in the preset)")
        if out is not self:
            out._check(f"{self.name} on {device_name} ({gib:.0f} GiB)")
        return out, notes

    def for_release_on(self, version: str, capacity_bytes: float,
                       device_name: str) -> tuple["EnginePreset", list[str], list[str]]:
        """(this preset as release ``version`` sets itself up on the device, the release notes, the device notes):
        ``for_version`` then ``for_device``, the order every caller needs (a deployment's settings come after)."""
        out, release = self.for_version(version)
        out, device = out.for_device(capacity_bytes, device_name, version)
        return out, release, device

    def release_defaults(self, version: str) -> dict[str, str]:
        """{key: "since VERSION: source"} for each default ``for_version(version)`` takes from a later release."""
        return {k: f"since {ver}: {srcs[k]}" for ver, values, srcs in self.since
                if version_key(ver) <= version_key(version) for k in values}

    def for_layout(self, tp: int, pp: int, attention_dp: int = 1) -> tuple["EnginePreset", list[str]]:
        """(this preset as it runs with ``tp``-way tensor and ``pp``-stage pipeline parallelism, ``attention_dp``
        attention data-parallel replicas sharing each MoE group (Parallelism.moe_replicas), a note for each setting
        the layout changes).  Resolve a preset once: the notes and the ratio scale are for a preset file's values."""
        if self.layout_attention_dp != 1:
            raise ValueError(f"{self.name}: for_layout applied twice (already for attention DP {self.layout_attention_dp})")
        out, notes = self, []
        limit = self.overlap_scheduling_max_pp
        if self.overlap_scheduling and limit and pp > limit:
            src = self.sources.get("overlap_scheduling_max_pp", "")
            out = dataclasses.replace(out, overlap_scheduling=False,
                                      sources={**out.sources, "overlap_scheduling": f"PP {pp} > {limit}: {src}"})
            notes.append(f"{self.name}: overlap scheduling off with PP {pp} (runs with PP <= {limit} only: {src})")
        group_tp = tp * attention_dp
        sizes = self.captured_sizes(group_tp)
        if sizes != self.cuda_graph_sizes:
            cap, src = self.small_tp_cuda_graph_max_batch, self.sources.get("small_tp_cuda_graph_max_batch", "")
            out = dataclasses.replace(out, cuda_graph_sizes=sizes,
                                      sources={**out.sources, "cuda_graph_sizes": f"TP {group_tp} < "
                                                                                  f"{self.small_tp_below}: sizes up to "
                                                                                  f"{cap} ({src})"})
            notes.append(f"{self.name}: decode CUDA graphs up to batch {cap} at TP {group_tp} (up to "
                         f"{max(self.cuda_graph_sizes)} from TP {self.small_tp_below}, as its defaults capture)")
        if attention_dp > 1:
            out = dataclasses.replace(out, layout_attention_dp=attention_dp)
            if self.attention_dp_splits_token_budget and self.token_budget:
                notes.append(f"{self.name}: each of the {attention_dp} attention-DP replicas takes {self.token_budget} "
                             f"// {attention_dp} = {out.step_tokens} tokens per step (preset key "
                             f"attention_dp_splits_token_budget)")
            scale = self.attention_dp_new_token_ratio_scale
            if scale != 1.0 and self.admission == "reserve_ratio":
                out = dataclasses.replace(out, new_token_ratio_init=self.new_token_ratio_init * scale,
                                          new_token_ratio_min=self.new_token_ratio_min * scale)
                notes.append(f"{self.name}: admission's new_token_ratio {self.new_token_ratio_init:g} .. "
                             f"{self.new_token_ratio_min:g} x {scale:g} with attention DP (preset key "
                             f"attention_dp_new_token_ratio_scale)")
        return out, notes

    def captured_sizes(self, group_tp: int) -> tuple[int, ...]:
        """The decode batch sizes captured with an engine TP group of ``group_tp`` devices (the small-TP cap)."""
        cap = self.small_tp_cuda_graph_max_batch
        if cap and group_tp < self.small_tp_below:
            return tuple(s for s in self.cuda_graph_sizes if s <= cap)
        return self.cuda_graph_sizes

    def with_overrides(self, overrides: dict, source: str) -> "EnginePreset":
        """This preset with ``overrides`` ({key: value}, e.g. a deployment's --max-num-batched-tokens as
        ``token_budget``) applied and checked like a preset file; ``source`` says where each value comes from."""
        if not overrides:
            return self
        known = {f.name for f in fields(self)} - {"name", "version", *_NOT_KEYS}
        unknown = sorted(set(overrides) - known)
        if unknown:
            import difflib

            near = [m for k in unknown for m in difflib.get_close_matches(k, sorted(known), n=2)]
            raise ValueError(f"unknown engine key(s) {unknown}" + (f" (did you mean {', '.join(near)}?)" if near else "")
                             + f"; expected keys from {sorted(known)}")
        kw = {k: _coerce(k, v, f"engine override {k}") for k, v in overrides.items()}
        srcs = {k: source for k in kw}
        if "cuda_graph_sizes" in kw and "small_tp_cuda_graph_max_batch" not in kw and self.small_tp_cuda_graph_max_batch:
            # an engine given its capture sizes (SGLang --cuda-graph-bs) captures them at any TP
            kw["small_tp_cuda_graph_max_batch"] = 0
            srcs["small_tp_cuda_graph_max_batch"] = f"{source}: cuda_graph_sizes given, captured as given at any TP"
        out = dataclasses.replace(self, **kw, sources={**self.sources, **srcs})
        out._check(f"{self.name} with overrides {sorted(kw)}")
        return out

    def _check(self, origin) -> None:
        choices = {"batching": ("continuous", "static"), "priority": ("decode_first", "prefill_first"),
                   "memory_fraction_of": ("total", "free_after_weights", "sglang_reserved_rule",
                                          "sglang_tier_reserve"),
                   "kv_full": ("preempt", "queue"), "admission": ("current_length", "full_request", "reserve_ratio"),
                   "sampler": tuple(SAMPLER_BYTES_PER_LOGIT), "ep_comm": EP_COMMS,
                   "qk_norm_kernels": QK_NORM_KERNELS, "linear_state_pool": ("per_sequence", "ratio")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"{origin}: {key} = {getattr(self, key)!r}; expected one of {list(allowed)}")
        if self.token_budget_at_least_seqs and 0 < self.token_budget < self.max_seqs:
            src = self.sources.get("token_budget_at_least_seqs", "")
            raise ValueError(f"{origin}: token_budget {self.token_budget} < max_seqs {self.max_seqs}: {self.name} "
                             f"refuses to start with fewer tokens per step than sequences ({src}); raise token_budget "
                             f"to at least {self.max_seqs} or lower max_seqs")
        if self.linear_state_slots_per_request < 1:
            raise ValueError(f"{origin}: linear_state_slots_per_request must be >= 1, got "
                             f"{self.linear_state_slots_per_request!r}")
        if self.linear_state_pool == "ratio" and not self.linear_state_memory_ratio > 0:
            raise ValueError(f"{origin}: linear_state_pool = 'ratio' needs linear_state_memory_ratio > 0, got "
                             f"{self.linear_state_memory_ratio!r}")
        if (self.kv_full == "queue") != (self.admission == "full_request"):
            # full_request reserves every block a request will need, so nothing ever runs out; with blocks that
            # follow the length a full pool must take blocks from someone, or every running request could wait
            raise ValueError(f"{origin}: kv_full = {self.kv_full!r} with admission = {self.admission!r}; a full pool "
                             f"queues new requests only when admission reserves whole requests (kv_full queue, "
                             f"admission full_request), otherwise it preempts (kv_full preempt with admission "
                             f"current_length or reserve_ratio)")
        if self.batching == "continuous" and not self.mixed_steps and self.admission != "reserve_ratio":
            # the separate-prefill-step scheduler is SGLang's: its admission rule and retraction
            raise ValueError(f"{origin}: mixed_steps false with admission = {self.admission!r}; separate prefill steps "
                             f"are modelled as SGLang runs them, with admission reserve_ratio and kv_full preempt: "
                             f"set those too, or keep mixed_steps true")
        if self.batching == "continuous" and not self.chunked_prefill and self.admission != "full_request":
            # a preempted request is prefilled again with the tokens it emitted: without chunking that prompt
            # can outgrow the token budget and never be scheduled again
            if not self.mixed_steps:
                raise ValueError(f"{origin}: chunked_prefill false is not modelled with separate prefill steps "
                                 f"(mixed_steps false, SGLang's scheduler): a retracted request's recompute can "
                                 f"outgrow every prefill batch without chunking; keep chunked_prefill true, with a "
                                 f"larger token_budget (SGLang --chunked-prefill-size) if prompts should not split")
            raise ValueError(f"{origin}: chunked_prefill false with admission = {self.admission!r}; a preempted "
                             f"request's recompute can outgrow the token budget without chunking: reserve whole "
                             f"requests so that nothing is preempted (--engine-arg admission=full_request "
                             f"--engine-arg kv_full=queue, as TensorRT-LLM does) or keep chunked_prefill true")
        for key in ("host_step_s", "host_s_per_seq"):
            v = getattr(self, key)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{origin}: {key} must be a number of seconds >= 0 (host work per step"
                                 f"{'' if key == 'host_step_s' else ' and scheduled request'}), got {v!r}")
        if self.batch_wait_max_tokens_ratio > 1:
            raise ValueError(f"{origin}: batch_wait_max_tokens_ratio must be in [0, 1] (a share of token_budget), got "
                             f"{self.batch_wait_max_tokens_ratio}")
        if self.holds_prompts and not (self.batching == "continuous" and self.mixed_steps and self.token_budget
                                       and self.priority == "decode_first"):
            raise ValueError(f"{origin}: batch_wait_timeout_iters {self.batch_wait_timeout_iters} with "
                             f"batch_wait_max_tokens_ratio {self.batch_wait_max_tokens_ratio} holds prompts as "
                             f"TensorRT-LLM does, which is modelled for continuous batching with mixed steps, "
                             f"decode_first priority and a token budget (batching {self.batching!r}, mixed_steps "
                             f"{self.mixed_steps}, priority {self.priority!r}, token_budget {self.token_budget}); set "
                             f"batch_wait_timeout_iters=0")
        if self.small_tp_cuda_graph_max_batch and self.small_tp_below < 2:
            raise ValueError(f"{origin}: small_tp_cuda_graph_max_batch = {self.small_tp_cuda_graph_max_batch} needs "
                             f"small_tp_below >= 2 (the TP degree from which every size is captured), got "
                             f"{self.small_tp_below}")
        if self.memory_fraction_of.startswith("sglang_"):
            if not 0 <= self.memory_fraction <= 1:  # 0: the release's own rule computes it
                raise ValueError(f"{origin}: memory_fraction (SGLang's --mem-fraction-static) must be in (0, 1], or 0 "
                                 f"for the release's own rule, got {self.memory_fraction}")
        elif not 0 < self.memory_fraction <= 1:
            raise ValueError(f"{origin}: memory_fraction must be in (0, 1], got {self.memory_fraction}")
        if self.max_seqs < 1 or self.block_size_tokens < 1:
            raise ValueError(f"{origin}: max_seqs and block_size_tokens must be >= 1")

    @property
    def overlaps_steps(self) -> bool:
        """Whether the host forms step n + 1 while step n runs (``overlap_scheduling`` on a continuous engine; a
        static batch has no scheduler loop to overlap)."""
        return self.overlap_scheduling and self.batching == "continuous"

    def host_work_s(self, requests: int) -> float:
        """The engine's host seconds for a step that schedules ``requests`` (host_step_s + host_s_per_seq x them)."""
        return self.host_step_s + self.host_s_per_seq * requests

    @property
    def holds_prompts(self) -> bool:
        """Whether batch waiting can hold a prompt: TensorRT-LLM's rule (_waiting_requests) ends a hold once the
        steps held reach batch_wait_timeout_iters or the tokens reach batch_wait_max_tokens_ratio x the budget, so
        with either at 0 every step ends it at once."""
        return self.batch_wait_timeout_iters > 0 and self.batch_wait_max_tokens_ratio > 0

    @property
    def step_tokens(self) -> int:
        """Tokens one step may schedule: the token budget (a replica's share where attention data parallelism
        splits it), capped by ``prefill_batch_tokens`` (0 = unlimited)."""
        budget = self.token_budget
        if budget and self.attention_dp_splits_token_budget and self.layout_attention_dp > 1:
            budget = max(1, budget // self.layout_attention_dp)
        caps = [c for c in (budget, self.prefill_batch_tokens) if c]
        return min(caps) if caps else 0

    def graph_batch(self, batch: int) -> int | None:
        """The captured size a decode batch of ``batch`` replays (padded up), or None when it runs eager."""
        if not self.cuda_graphs or not self.cuda_graph_sizes:
            return None
        for s in self.cuda_graph_sizes:
            if s == batch or (s > batch and self.cuda_graph_padding):
                return s
        return None


def release_range_notes(preset: EnginePreset, version: str) -> list[str]:
    """A note when ``version`` (--engine-version) is outside the releases ``preset`` documents, or the preset has
    none; [] for no version or a documented one."""
    if not version:
        return []
    # releases the preset knows: those its version line names and those its 'since' entries start
    known = list(dict.fromkeys(re.findall(r"\d+\.\d+[\w.]*", str(preset.version)) + [v for v, _, _ in preset.since]))
    if preset.batching == "static" or not known:
        return [f"--engine-version {version}: the {preset.name} preset has no releases; ignored"]
    if version_key(version)[:3] > max(version_key(v)[:3] for v in known):  # a post-release is its release
        return [f"--engine-version {version}: newer than any release the {preset.name} preset documents "
                f"({', '.join(known)}): its newest documented defaults apply"]
    if version_key(version)[:3] < min(version_key(v)[:3] for v in known):
        return [f"--engine-version {version}: older than any release the {preset.name} preset documents "
                f"({', '.join(known)}): its oldest documented defaults apply"]
    return []


def sizes_text(sizes) -> str:
    """Batch sizes in a few words: arithmetic runs of 3 or more as ``a..b`` (step 1) or ``a..b by s``
    ((1, 2, 4, 8, 12, 16, 24, 32) -> "1, 2, 4..16 by 4, 24, 32"; TensorRT-LLM's 1..32, 64, 128)."""
    v, parts, i = list(sizes), [], 0
    while i < len(v):
        j = i + 1
        if j < len(v):
            step = v[j] - v[i]
            while j + 1 < len(v) and v[j + 1] - v[j] == step:
                j += 1
        if j - i >= 2:
            parts.append(f"{v[i]}..{v[j]}" + (f" by {v[i + 1] - v[i]}" if v[i + 1] - v[i] != 1 else ""))
            i = j + 1
        else:
            parts.append(str(v[i]))
            i += 1
    return ", ".join(parts)


def _short(v) -> str:
    """A preset value for a one-line note: a list of sizes in a few words."""
    return sizes_text(v) if isinstance(v, tuple) and len(v) > 6 else str(v)


def _entry(where: str, key: str, value, cites: str) -> tuple:
    """One preset key's ``{value, source}`` (a file's or a ``since`` entry's): the value checked and coerced to
    the field's type, and its citation."""
    if not (isinstance(value, dict) and set(value) == {"value", "source"}):
        raise ValueError(f"{where}: {key} must be {{value: ..., source: '...'}} citing {cites}, got {value!r}")
    if not isinstance(value["source"], str) or not value["source"].strip():
        raise ValueError(f"{where}: {key}.source must cite {cites}")
    return _coerce(key, value["value"], f"{where}: {key}.value"), value["source"]


def _entry_keys(where: str, entry: dict, head: str, known: dict, cites: str) -> tuple[dict, dict]:
    """({key: value}, {key: source}) of a ``since`` or ``device_rules`` entry, all but its ``head`` key (version,
    when), each checked as a preset file's key."""
    values, srcs = {}, {}
    for key, value in entry.items():
        if key == head:
            continue
        if key not in known or key in ("name", "version"):
            raise ValueError(f"{where}: unknown engine key {key!r}; expected keys from {sorted(known)}")
        values[key], srcs[key] = _entry(where, key, value, cites)
    return values, srcs


def _read_since(path, entries, known: dict) -> tuple:
    """A preset's ``since`` list: each entry a ``version`` and keys as ``{value, source}``, versions ascending."""
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise ValueError(f"{path}: since must be a list of {{version: ..., <key>: {{value, source}}}}, got {entries!r}")
    out = []
    for i, entry in enumerate(entries):
        where = f"{path}: since[{i}]"
        if not isinstance(entry, dict) or not str(entry.get("version", "")).strip():
            raise ValueError(f"{where} needs a version, e.g. - version: \"0.14.0\"")
        values, srcs = _entry_keys(where, entry, "version", known, "the release")
        out.append((str(entry["version"]), values, srcs))
    keys = [version_key(v) for v, _, _ in out]
    if keys != sorted(keys):
        raise ValueError(f"{path}: since entries must be in ascending version order, got {[v for v, _, _ in out]}")
    return tuple(out)


_WHEN_KEYS = ("memory_gib_from", "memory_gib_below", "device_name_contains", "since", "before")
"""Conditions a device rule may state (EnginePreset.device_rules)."""


def _read_device_rules(path, entries, known: dict) -> tuple:
    """A preset's ``device_rules`` list: each entry a ``when`` mapping (keys of _WHEN_KEYS) and keys as
    ``{value, source}``."""
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise ValueError(f"{path}: device_rules must be a list of {{when: {{...}}, <key>: {{value, source}}}}, got "
                         f"{entries!r}")
    out = []
    for i, entry in enumerate(entries):
        where = f"{path}: device_rules[{i}]"
        when = entry.get("when") if isinstance(entry, dict) else None
        if not isinstance(when, dict) or not when:
            raise ValueError(f"{where} needs a when mapping, e.g. when: {{memory_gib_below: 70}}")
        bad = sorted(set(when) - set(_WHEN_KEYS))
        if bad:
            raise ValueError(f"{where}: unknown condition(s) {bad}; expected some of {list(_WHEN_KEYS)}")
        for k in ("memory_gib_from", "memory_gib_below"):
            if k in when and (not isinstance(when[k], (int, float)) or isinstance(when[k], bool) or when[k] <= 0):
                raise ValueError(f"{where}: when.{k} must be a number of GiB > 0, got {when[k]!r}")
        for k in ("since", "before"):
            if k in when:
                when = {**when, k: check_version(str(when[k]), f"{where}: when.{k}")}
        if "device_name_contains" in when and not str(when["device_name_contains"]).strip():
            raise ValueError(f"{where}: when.device_name_contains must be a non-empty word")
        values, srcs = _entry_keys(where, entry, "when", known, "the engine's code for such a device")
        if not values:
            raise ValueError(f"{where}: a rule with no keys changes nothing")
        out.append((dict(when), values, srcs))
    return tuple(out)


def _device_rule_holds(when: dict, gib: float, device_name: str, version: str) -> bool:
    """Whether every condition of a device rule holds for a device of ``gib`` GiB named ``device_name`` running
    release ``version`` ("" = the newest)."""
    if "memory_gib_from" in when and not gib >= when["memory_gib_from"]:
        return False
    if "memory_gib_below" in when and not gib < when["memory_gib_below"]:
        return False
    if "device_name_contains" in when and str(when["device_name_contains"]).lower() not in device_name.lower():
        return False
    if "since" in when and version_key(version) < version_key(when["since"]):
        return False
    if "before" in when and not version_key(version) < version_key(when["before"]):
        return False
    return True


def _coerce(key: str, v, where: str):
    """A preset value of ``key`` checked and converted to its field's type (the one rule for files and overrides)."""
    want = {f.name: f.type for f in fields(EnginePreset)}[key]
    if key == "cuda_graph_sizes":
        if not isinstance(v, (list, tuple)) or not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in v):
            raise ValueError(f"{where} must be a list of positive integers, got {v!r}")
        return tuple(sorted(v))
    if want == "bool" and not isinstance(v, bool):
        raise ValueError(f"{where} must be true/false, got {v!r}")
    if want in ("int", "float") and isinstance(v, str):
        # YAML 1.1 reads 1e12 or 9e-1 (no dot, or no sign on the exponent) as text: a number in either spelling
        try:
            n = float(v)
        except ValueError:
            n = None
        if n is not None and math.isfinite(n):
            v = int(n) if want == "int" and n.is_integer() else n
    low = 1 if key in ("max_seqs", "block_size_tokens") else 0  # 0 means "no limit" only for the token budgets
    if want == "int" and (not isinstance(v, int) or isinstance(v, bool) or v < low):
        raise ValueError(f"{where} must be an integer >= {low}, got {v!r}")
    if want == "float" and (not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0):
        raise ValueError(f"{where} must be a number >= 0, got {v!r}")
    if key == "tp_all_reduce_kernel" and v is None:
        return ""  # `tp_all_reduce_kernel=` (nothing): the collective library
    if want == "str" and not isinstance(v, str):
        raise ValueError(f"{where} must be a string, got {v!r}")
    return float(v) if want == "float" else v


def dataclasses_missing():
    from dataclasses import MISSING

    return MISSING


def engine_names() -> list[str]:
    """Names of the bundled engine presets, sorted."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
