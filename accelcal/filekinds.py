"""Which of accelcal's input files a parsed document is, so a file given to the wrong option says what it is.

    from accelcal.filekinds import wrong_file_hint
    hint = wrong_file_hint(data, "model")   # "" for a model config; else "; it is an accelerator profile: ..."

Each loader (profile, model config, engine preset) reads its own keys and refuses unknown ones; when the whole
document is another kind of accelcal file, listing the allowed keys buries the cause, so the loaders append
this hint instead: what the file is and the option that takes it.  The kinds are told apart by keys each
one must have (a profile's ``identity``, a model's ``layers``/``hidden_size``/``heads``, an engine preset's
``token_budget``/``max_seqs``, a Hugging Face config's ``architectures`` or ``model_type``, a MoE table's
``kind``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["document_kind", "wrong_file_hint"]


def document_kind(data: Any) -> tuple[str, str, str] | None:
    """(kind, what it is in words, the option that takes it) of a parsed document, or None when it is none of
    accelcal's inputs.  Kinds: ``profile``, ``interconnect``, ``model``, ``hf_config``, ``engine``, ``moe_table``."""
    if not isinstance(data, dict):
        return None
    keys = set(data)
    if data.get("kind") == "moe_op_table":
        return "moe_table", "a published table of an engine's MoE op", "--moe-table"
    if "identity" in keys and "schema_version" in keys:
        if not data.get("compute") and data.get("collectives"):
            return "interconnect", "an interconnect profile (collectives only)", "--interconnect"
        return "profile", "an accelerator profile", "--profile"
    if "architectures" in keys or "model_type" in keys:
        return "hf_config", "a Hugging Face config.json", "--model"
    if {"layers", "hidden_size", "heads"} <= keys:
        return "model", "a model config", "--model"
    if {"token_budget", "max_seqs"} & keys and "name" in keys:
        return "engine", "an engine preset", "--engine"
    return None


def wrong_file_hint(data: Any, expected: str) -> str:
    """'' when ``data`` is of the ``expected`` kind (``profile``, ``model`` or ``engine``; a model also takes a
    Hugging Face config, a profile an interconnect profile) or of no kind accelcal knows; else "; it is <what>,
    which <option> takes" to append to the loader's error."""
    kind = document_kind(data)
    same = {"profile": ("profile", "interconnect"), "model": ("model", "hf_config"), "engine": ("engine",)}
    if kind is None or kind[0] in same.get(expected, (expected,)):
        return ""
    return f"; it is {kind[1]}, which {kind[2]} takes"
