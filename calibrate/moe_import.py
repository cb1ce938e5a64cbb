"""``accelcal import moe-table``: a published MoE op latency table into a ``kind: moe_op_table`` YAML file.

    $ accelcal import moe-table moe_perf.parquet --engine vllm --model deepseek-v3 --model qwen3-235b-a22b \\
          --citation https://github.com/ai-dynamo/aiconfigurator/blob/095f58a51/aic-core/.../moe_perf.parquet \\
          --out profiles/engine-kernels/h100-vllm-0.14.0-moe.yaml

The input is NVIDIA aiconfigurator's ``moe_perf`` table (Parquet, or CSV with the same columns: framework,
version, device, moe_dtype, num_tokens, hidden_size, inter_size, topk, num_experts, moe_tp_size, moe_ep_size,
distribution, latency in ms, kernel_source), one engine release on one device.  ``--model`` keeps only the
expert shapes of those models (presets or config.json), so a shipped table stays small.  The output is
``published`` (``--citation`` required) and is read by ``accelcal predict`` / ``plan`` ``--moe-table``
(calibrate.moe_table).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from accelcal.safe_io import check_regular_file

from .moe_table import DISTRIBUTION_ORDER, table_from_rows

__all__ = ["register", "import_moe_table"]

COLUMNS = ("version", "device", "moe_dtype", "num_tokens", "hidden_size", "inter_size", "topk", "num_experts",
           "moe_tp_size", "moe_ep_size", "distribution", "latency", "kernel_source")
"""Columns the published table must have (aiconfigurator's moe_perf schema)."""


def _read(path: str):
    import pandas as pd

    check_regular_file(path, "published MoE table")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{path}: empty file; expected aiconfigurator's moe_perf table (Parquet or CSV)")
    if path.lower().endswith(".parquet"):
        try:
            df = pd.read_parquet(path)
        except ImportError as exc:
            raise ValueError(f"{path}: reading Parquet needs pyarrow (pip install -e '.[parquet]'), or pass the "
                             f"table as CSV: {exc}") from None
    else:
        try:
            df = pd.read_csv(path, comment="#")
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            with open(path, "rb") as fh:
                head = fh.read(64)
            if head.startswith(b"kind: moe_op_table"):
                raise ValueError(f"{path}: is a MoE op table accelcal already wrote (YAML); pass it to predict / plan "
                                 f"--moe-table as it is, or import the published moe_perf table it came from") from None
            raise ValueError(f"{path}: cannot read it as a CSV: {str(exc).strip()}") from None
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: columns {missing} missing (expected aiconfigurator's moe_perf columns {list(COLUMNS)}; "
                         f"it has {sorted(df.columns)[:20]})")
    if df.empty:
        raise ValueError(f"{path}: has the columns but no rows")
    for col in ("device", "version"):
        vals = sorted(df[col].astype(str).unique())
        if len(vals) != 1:
            raise ValueError(f"{path}: one table holds one device and one engine release; column {col} has {vals[:6]}")
    return df


def import_moe_table(path: str, engine: str, citations: list[str], out: str | None, models: list[str],
                     distributions: list[str] | None, force: bool, command: str, progress=print,
                     moe_ep: list[int] | None = None):
    """Read ``path``, keep ``models``' expert shapes (all when empty) and ``distributions`` (all when None), write
    ``out`` atomically; ``moe_ep``: keep those expert-parallel sizes only (None: all); returns the table."""
    from accelcal.models import ModelConfig
    from accelcal.collectives.nccl_tests import sha256_of

    if not citations or not all(c.strip() for c in citations):
        raise ValueError("--citation: a published table needs where it was published (file and commit or URL), "
                         "not an empty string")
    if out and os.path.isdir(out):
        raise ValueError(f"--out {out}: is a directory; expected a YAML file name")
    if out and Path(out).suffix not in (".yaml", ".yml"):
        raise ValueError(f"--out {out}: expected a table path ending in .yaml (the table is written as YAML)")
    if out:
        from accelcal.preflight import check_import_out

        check_import_out(out, [path], force)
    df = _read(path)
    device, version = str(df.device.iloc[0]), str(df.version.iloc[0])
    if "framework" in df.columns:
        # the publication's own engine name (aiconfigurator: VLLM, SGLang, TRTLLM) against --engine
        frameworks = sorted({str(f).lower().replace("-", "").replace("_", "") for f in df.framework.unique()})
        if frameworks != [engine.replace("-", "")]:
            raise ValueError(f"--engine {engine}: {path} was collected on {sorted(df.framework.unique())} "
                             f"(its framework column)")
    if models:
        shapes = set()
        for name in models:
            m = ModelConfig.resolve(name)
            if not m.is_moe:
                raise ValueError(f"--model {name}: is dense (no routed experts); give MoE models")
            shapes.add((m.hidden_size, m.expert_ffn_size, m.top_k, m.num_experts))
        keep = [(h, f, k, e) in shapes for h, f, k, e in zip(df.hidden_size, df.inter_size, df.topk, df.num_experts)]
        df = df[keep]
        if df.empty:
            raise ValueError(f"{path}: no row has the expert shape (hidden, expert ffn, top-k, experts) of "
                             f"{', '.join(models)}: {sorted(shapes)}")
    if moe_ep:
        df = df[df.moe_ep_size.isin(moe_ep)]
        if df.empty:
            raise ValueError(f"--moe-ep {moe_ep}: {path} has no row at those expert-parallel sizes")
    have = sorted(df.distribution.astype(str).unique())
    if distributions:
        df = df[df.distribution.isin(distributions)]
        if df.empty:
            raise ValueError(f"--distribution {distributions}: {path} has {have}")
    table, notes = table_from_rows(df.to_dict("records"), device, engine, version, list(citations), origin=path)
    if not distributions:
        # a query answers from each shape's preferred routing (DISTRIBUTION_ORDER): the others are not kept
        kept = [table.entry(*k) for k in dict.fromkeys(e.key for e in table.entries)]
        if len(kept) < len(table.entries):
            notes.append(f"kept each shape's preferred routing distribution (of {have}; order {list(DISTRIBUTION_ORDER)}"
                         f", then others): {len(kept)} of {len(table.entries)} entries; --distribution keeps others")
        table = type(table)(table.device, table.engine, table.engine_version, table.citations, kept, date=table.date,
                            origin=table.origin)
    # what a later load would refuse (a unit slip: seconds or microseconds in the ms column) is refused now
    type(table).from_dict(table.to_dict(), origin=path)
    table.command = command
    # the file as published is the citation's; its name and digest say which copy was read
    table.raw_sha256 = {Path(path).name: sha256_of(path)}
    for n in notes:
        progress(f"[import] {n}")
    if out:
        table.save(out)
    return table


def register(isub: argparse._SubParsersAction) -> None:
    p = isub.add_parser("moe-table", help="a published MoE op latency table (aiconfigurator moe_perf) into a "
                                          "table predict / plan read with --moe-table",
                        description=__doc__.split("\n\n")[2].replace("\n", " "))
    p.add_argument("file", metavar="FILE", help="moe_perf.parquet or a CSV with its columns")
    p.add_argument("--engine", required=True, choices=("vllm", "sglang", "trtllm"),
                   help="the serving engine whose MoE op the table timed")
    p.add_argument("--citation", action="append", default=[], metavar="URL", required=True,
                   help="where the table was published (repeatable; required)")
    p.add_argument("--out", required=True, help="YAML to write (refused if it exists, unless --force)")
    p.add_argument("--model", action="append", default=[], metavar="M",
                   help="keep only this MoE model's expert shape (preset or config.json; repeatable; default: all)")
    p.add_argument("--distribution", action="append", default=None, choices=DISTRIBUTION_ORDER,
                   help="keep this routing distribution (repeatable; default: each shape's preferred one, balanced "
                        "first, the one predict would use)")
    p.add_argument("--moe-ep", action="append", type=int, default=None, metavar="N",
                   help="keep this expert-parallel size only (repeatable; predict reads moe_ep 1, every expert "
                        "TP-split; default: all)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import shlex

    command = shlex.join(["accelcal", "import", "moe-table", args.file, "--engine", args.engine]
                       + [x for c in args.citation for x in ("--citation", c)]
                       + [x for m in args.model for x in ("--model", m)]
                       + [x for d in (args.distribution or []) for x in ("--distribution", d)]
                       + [x for n in (args.moe_ep or []) for x in ("--moe-ep", str(n))] + ["--out", args.out])
    t = import_moe_table(args.file, args.engine, args.citation, args.out, args.model, args.distribution, args.force,
                         command, moe_ep=args.moe_ep)
    print(f"[import] wrote {args.out}: {len(t.entries)} entries ({t.engine} {t.engine_version} on {t.device}, "
          f"published)")
    return 0
