"""``accelcal import nccl-tests``: an interconnect profile from nccl-tests results (or accelcal's collectives CSV).

    $ accelcal import nccl-tests logs/all_reduce_perf.txt logs/all_gather_perf.txt --out profiles/interconnect/my-nvswitch.yaml
    $ accelcal import nccl-tests run.json --out ib.yaml --citation https://github.com/org/repo/issues/1 --name my-ib

    from accelcal.calibrate.nccl_import import import_profile
    prof = import_profile(["all_reduce_perf.txt"], name="my-node", citations=[], out="ic.yaml")

Each run (one binary's sizes on one communicator) becomes one collective entry,
keyed (op, scope, group size): scope is ``inter_node`` when the rank lines name
more than one host, group size is the rank count (a pair for sendrecv, whose
ranks all send to their ring neighbour at once, as a pipeline stage boundary
does).  The fit is the one ``accelcal calibrate`` uses
(:func:`accelcal.calibrate.fit_alpha_beta.fit_piecewise`, up to 3 latency +
bandwidth pieces chosen by held-out error, quality and flags as in every
profile), on the out-of-place and in-place times of every size > 0.  The
profile has collectives only (an *interconnect profile*): combine it with a
device profile through ``accelcal plan --interconnect`` / ``--inter-node-profile``
(:mod:`accelcal.calibrate.compose`).  Sources: ``published`` when ``--citation``
is given (numbers measured by someone else), else ``measured``; the sha256 of
every input file is recorded in ``identity.raw_sha256``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Callable, Sequence

from accelcal.vocab import DTYPE_BYTES, FABRICS, SCOPES

from .profile import CollectiveEntry, Identity, Overheads, Profile
from .profile.entries import collective_fit_label

__all__ = ["import_profile", "profile_from_runs", "register", "MAX_PIECES", "SMALL_MESSAGE_BYTES"]

MAX_PIECES = 3
"""Latency + bandwidth pieces per collective, as calibrate fits them (protocol switches: LL, LL128, Simple)."""

SMALL_MESSAGE_BYTES = 1 << 20
"""A log whose smallest size is above this gets a quality flag: its fitted latency is not a small-message measurement."""

PLACEMENT_DISAGREE = 1.5
"""With --placement both, a median in-place / out-of-place time ratio past this (or its inverse) gets a quality flag
and a warning: nccl-tests' two placements run the same collective and normally agree within a few per cent, so a
gap this wide is an edited log or a disturbed run, and the fit would average two different series."""


def _device_layout(runs) -> tuple[str, str, int, int, list[str]]:
    """(device_type, device_name, devices_per_node, nodes, hosts) from the runs' rank lines."""
    names = Counter(d for r in runs for d in r.devices if d)
    device_name = names.most_common(1)[0][0] if names else "unknown (no rank lines in the log)"
    rccl = any("AMD" in d or "Instinct" in d or "Radeon" in d for d in names)
    per_node, nodes, hosts = 1, 1, set()
    for r in runs:
        if r.hosts:
            c = Counter(r.hosts)
            per_node, nodes = max(per_node, max(c.values())), max(nodes, len(c))
            hosts |= set(c)
        else:
            per_node = max(per_node, r.ranks if r.scope == SCOPES[0] else 1)
    return ("rocm" if rccl else "cuda"), device_name, per_node, nodes, sorted(hosts)


def _flag_and_warn(fit, progress: Callable[[str], object] | None, msg: str) -> None:
    """A doubt the profile keeps (the fit's quality flag) and the import prints as it reads."""
    fit.quality.flags.append(msg)
    if progress:
        progress(f"WARNING: {msg}")


def profile_from_runs(runs, name: str, citations: Sequence[str] = (), command: str = "",
                      scope: str | None = None, raw_data: Sequence[str] = (), raw_sha256: dict | None = None,
                      placement: str = "both", progress: Callable[[str], object] | None = None,
                      devices_per_node: int | None = None, fabric: str | None = None) -> Profile:
    """Fit every run into one collectives-only Profile (validated by the strict loader before it is returned).

    ``fabric`` (accelcal.vocab.FABRICS) is recorded on every entry: on a switch fabric (NVSwitch) a group size
    the logs did not measure keeps their latency instead of the ring model's per-step growth.

    ``devices_per_node``: the node's size when the logs ran on a subset of its devices (e.g. ``-g 4`` on an
    8-GPU NVSwitch node), so a plan knows an 8-way group still stays inside the node.
    """
    # the reader's notes that put a run in doubt: no footer, an error line around it, ranks inferred
    from accelcal.collectives.nccl_tests import DOUBT_NOTES

    from .fit_alpha_beta import fit_piecewise  # scipy: the measure extra; registering the command needs none

    if not runs:
        raise ValueError("import nccl-tests: no runs to fit")
    if scope is not None and scope not in SCOPES:
        raise ValueError(f"--scope must be one of {SCOPES}, got {scope!r}")
    groups: dict[tuple[str, str, int], list] = {}
    for r in runs:
        if r.group_size < 2:
            # accelcal bench collectives --nproc 1 writes such rows (busbw factor 0): nothing crossed a fabric
            raise ValueError(f"{os.path.basename(r.source)}: {r.op} over {r.group_size} rank: a collective of one rank "
                             f"moves no data between devices, so it measures no fabric; import a run of 2 or more "
                             f"ranks")
        if scope == SCOPES[0] and r.nodes > 1:  # the log's own rank lines say its ranks spanned hosts
            raise ValueError(f"--scope {scope}: {os.path.basename(r.source)} ran its {r.ranks} ranks on {r.nodes} "
                             f"hosts ({', '.join(sorted(set(r.hosts))[:4])}), so its collectives crossed nodes; "
                             f"leave --scope out (it is {r.scope}) or import a single-node log")
        groups.setdefault((r.op, scope or r.scope, r.group_size, r.kernel or ""), []).append(r)
    entries = []
    for (op, sc, gs, kernel), rs in sorted(groups.items()):
        clusters = {tuple(sorted(set(r.hosts))) for r in rs if r.hosts}
        if len(clusters) > 1:
            raise ValueError(f"{op} {sc} group {gs}: the runs come from different hosts "
                             f"({'; '.join(','.join(c) for c in sorted(clusters))}), i.e. different fabrics; "
                             f"import each cluster's logs into its own profile")
        xs, ts = [], []
        for r in rs:
            x, t = r.series(placement)
            xs += x
            ts += t
        dtypes = {r.dtype for r in rs}
        raw = sorted({row.type_name for r in rs for row in r.rows})
        if len(raw) > 1 or len(dtypes) > 1:
            # nccl-tests -d all: one fit per element type would be needed, and a profile entry has one dtype
            raise ValueError(f"{rs[0].source}: {op}: the rows mix element types {raw} (nccl-tests -d all); a fit "
                             f"takes one: run nccl-tests with one -d (float, half or bfloat16), one log per type")
        if None in dtypes:
            raise ValueError(f"{rs[0].source}: {op}: element type {raw} has no accelcal dtype name (known "
                             f"{sorted(DTYPE_BYTES)}); run nccl-tests with -d float, half or bfloat16")
        label = collective_fit_label(op, sc, gs, kernel)
        try:
            f = fit_piecewise(label, xs, ts, max_pieces=MAX_PIECES, target="collective")
        except ValueError as exc:
            raise ValueError(f"{', '.join(sorted({os.path.basename(r.source) for r in rs}))}: {exc}") from None
        if placement == "both":
            ratios = sorted(row.in_place.time_s / row.out_of_place.time_s for r in rs for row in r.rows
                            if row.size_bytes > 0 and row.in_place is not None and row.out_of_place is not None
                            and row.in_place.time_s > 0 and row.out_of_place.time_s > 0)
            mid = ratios[len(ratios) // 2] if ratios else 1.0
            if max(mid, 1.0 / mid) > PLACEMENT_DISAGREE:
                _flag_and_warn(f, progress, f"{label}: in-place times are {mid:.3g}x the out-of-place ones (median "
                               f"over {len(ratios)} sizes; nccl-tests' two placements usually agree within a few %): "
                               f"the fit mixes both; --placement in or out fits one")
        if min(xs) > SMALL_MESSAGE_BYTES:
            # Without small messages the intercept is where the large-message line meets S = 0, not a latency.
            f.quality.flags.append(f"{label}: smallest measured size {min(xs):.4g} B > {SMALL_MESSAGE_BYTES} B: the "
                                   f"latency is the large-message intercept, not a measured small-message time")
        for note in dict.fromkeys(n for r in rs for n in r.notes if n.startswith(DOUBT_NOTES)):
            # kept in the profile, not only printed: a log cut after a complete row looks like a finished one, and
            # plan / predict warn when they use such an entry (compose.doubtful_collectives)
            f.quality.flags.append(f"{label}: {note}")
        hosts = sorted({h for r in rs for h in r.hosts})
        if sc == SCOPES[1] and len(hosts) == 1:
            _flag_and_warn(f, progress, f"{label}: --scope {sc}, but every rank of the log ran on host {hosts[0]}: its "
                           f"times are that host's own fabric, a stand-in for the network between nodes only if the "
                           f"run forced it (e.g. NCCL_P2P_DISABLE=1 NCCL_SHM_DISABLE=1)")
        entries.append(CollectiveEntry(op=op, scope=sc, group_size=gs, dtype=next(iter(dtypes)), pieces=f.pieces,
                                       quality=f.quality, fabric=fabric, kernel=kernel or None))
        if progress:
            q = f.quality
            progress(f"fitted {label} from {len(xs)} points ({len(rs)} run(s)): {len(f.pieces)} piece(s), latency "
                     f"{f.pieces[0].latency_s * 1e6:.3g} us, bandwidth (algbw, S / t) "
                     f"{f.pieces[-1].bandwidth_bytes_per_s / 1e9:.4g} GB/s, "
                     f"held-out median {q.heldout_median_rel_err:.1%}{' FLAGGED: ' + '; '.join(q.flags) if q.flags else ''}")
    dev_type, dev_name, per_node, nodes, hosts = _device_layout(runs)
    if devices_per_node is not None:
        if devices_per_node < per_node:
            raise ValueError(f"--devices-per-node {devices_per_node}: the logs' rank lines put {per_node} ranks on "
                             f"one host; a node cannot hold fewer devices than one run used there")
        per_node = devices_per_node
    versions = {}
    for r in runs:
        if r.nccl_version:
            versions.setdefault("nccl", r.nccl_version)
        if r.nccl_tests_version:
            versions.setdefault("nccl_tests", r.nccl_tests_version)
        if r.graph is not None:
            versions.setdefault("nccl_tests_graph", str(r.graph))
    from accelcal.build import build_versions

    versions.update(build_versions())  # the accelcal that parsed and fitted them
    cites = [c for c in citations if c.strip()]
    ident = Identity(
        name=name, source="published" if cites else "measured", device_type=dev_type, device_name=dev_name,
        devices_per_node=per_node, nodes=nodes, memory_capacity_bytes=None, host=",".join(hosts), date="",
        command=command, versions=versions, citations=cites, raw_data=list(raw_data),
        raw_sha256=dict(raw_sha256 or {}))
    prof = Profile(identity=ident, compute={}, memory={}, overheads=Overheads(), collectives=entries)
    return Profile.from_dict(prof.to_dict(), origin="import nccl-tests result")


def _provenance_from_env(prof: Profile, csvs: Sequence[str]) -> None:
    """accelcal's own collectives CSVs carry their provenance in ``<stem>.env.json``: the host, date and versions
    the logs of other tools print in their headers (the first CSV with one answers; a log's own lines win)."""
    from accelcal.safe_io import load_json

    ident = prof.identity
    for path in csvs:
        env_path = Path(path).with_suffix(".env.json")
        if not env_path.is_file():
            continue
        env = load_json(env_path, what="environment", expect=dict)
        ident.host = ident.host or str(env.get("host") or "")
        ident.date = ident.date or str(env.get("date") or "")
        for key, field_ in (("torch", "torch_version"), ("nccl", "nccl_version"), ("python", "python_version")):
            if env.get(field_):
                ident.versions.setdefault(key, str(env[field_]))
        if env.get("device_name") and str(ident.device_name or "").startswith("unknown"):
            # a CSV has no rank lines: the device is the one its run recorded
            ident.device_name = str(env["device_name"])
            ident.device_type = str(env.get("device_type") or ident.device_type)
        return


def import_profile(paths: Sequence[str], name: str | None = None, citations: Sequence[str] = (),
                   out: str | None = None, scope: str | None = None, op: str | None = None, force: bool = False,
                   command: str = "", placement: str = "both",
                   progress: Callable[[str], object] | None = None, devices_per_node: int | None = None,
                   fabric: str | None = None) -> Profile:
    """Parse, fit and (with ``out``) write atomically; refuses to replace ``out`` unless ``force``."""
    if fabric is not None and fabric not in FABRICS:
        raise ValueError(f"--fabric {fabric!r}: expected one of {list(FABRICS)}")
    if devices_per_node is not None and devices_per_node < 1:
        raise ValueError(f"--devices-per-node must be an integer >= 1, got {devices_per_node}")
    from accelcal.collectives.latency_table import is_latency_table, read_latency_table
    from accelcal.collectives.nccl_tests import read_runs, sha256_of

    if any(not c.strip() for c in citations):
        raise ValueError("--citation: where the logs were published (URL, or file and commit), not an empty string; "
                         "leave --citation out for logs of your own runs")
    if out is not None:
        from accelcal.preflight import check_import_out

        check_import_out(out, list(paths), force)
    if out is not None:
        from accelcal.preflight import check_file

        check_file(out, what="--out")  # before the fit: a folder or a read-only place is said at once, by name
    # the same log given twice (or under two names) would count its points as two independent runs
    digests: dict[str, str] = {}  # each file hashed once: also recorded in the profile (raw_sha256)
    seen: dict[str, str] = {}
    for p in paths:
        if not os.path.isfile(p):
            continue
        if p not in digests:
            digests[p] = sha256_of(p)
        digest = digests[p]
        if digest in seen:
            same = "is given twice" if os.path.realpath(p) == os.path.realpath(seen[digest]) else \
                f"has the same contents as {seen[digest]}"
            raise ValueError(f"{p} {same} (sha256 {digest[:12]}...): each log counts as one run; pass it once")
        seen[digest] = p
    tables = [p for p in paths if str(p).lower().endswith(".csv") and os.path.isfile(p) and is_latency_table(str(p))]
    logs = [p for p in paths if p not in tables]
    for p in logs:
        env = Path(p).with_suffix(".env.json")
        if str(p).lower().endswith(".csv") and not env.is_file():
            # its device, host and versions are recorded there, not in the CSV: without it the profile would name
            # no device (and guess its type)
            raise ValueError(f"{p}: an accelcal collectives CSV without its {env.name} beside it (the run's device, "
                             f"host and versions); copy it beside the CSV, as accelcal bench collectives wrote them")
    runs = (read_runs(logs, op=op) if logs else []) + [r for t in tables for r in read_latency_table(str(t))]
    for r in runs:
        if progress:
            progress(f"read {r.describe()}" + (f" [{'; '.join(r.notes)}]" if r.notes else ""))
    base = Path(out).resolve().parent if out else Path.cwd()
    raw = [os.path.relpath(Path(p).resolve(), base) for p in paths]
    sha = {rel: digests[p] for rel, p in zip(raw, paths)}  # read_runs has refused any path that is not a file
    name = name or (Path(out).stem if out else Path(paths[0]).stem)
    prof = profile_from_runs(runs, name, citations, command, scope, raw, sha, placement, progress, devices_per_node,
                             fabric)
    _provenance_from_env(prof, [p for p in paths if any(r.fmt == "accelcal-csv" and r.source == p for r in runs)])
    if out is not None:
        prof.save(out)
    return prof


def register(sub: argparse._SubParsersAction, bench_sub: argparse._SubParsersAction) -> None:
    imp = sub.add_parser("import", help="make a profile from results measured elsewhere (nccl-tests) or a published MoE op table")
    isub = imp.add_subparsers(dest="source_kind", metavar="KIND")
    imp.set_defaults(func=lambda args: (imp.print_help(), 2)[1])
    p = isub.add_parser("nccl-tests", help="fit nccl-tests text / -J JSON output (or accelcal collectives CSV) "
                                           "into an interconnect profile",
                        description="Parse every *_perf log (all_reduce, all_gather, reduce_scatter, alltoall, "
                                    "broadcast, sendrecv; text or -J JSON) and accelcal collectives CSVs, fit latency + "
                                    "bandwidth per (collective, scope, group size) with fit quality, and write a "
                                    "collectives-only profile atomically. Logs with #wrong > 0, 'Out of bounds values: "
                                    "N FAILED', cut rows or nothing parsable are refused, naming the file and line.")
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="nccl-tests output (.txt/.log, .json), accelcal collectives CSV, or a published latency table "
                        "CSV (kernel,op,group_size,dtype,size_bytes,time_s; accelcal.collectives.latency_table)")
    p.add_argument("--out", required=True, help="profile YAML to write (refused if it exists, unless --force)")
    p.add_argument("--name", default=None, help="profile name: the --out file stem (given, it must equal it)")
    p.add_argument("--scope", choices=SCOPES, default=None,
                   help="scope of every entry (default: inter_node when the rank lines name several hosts)")
    p.add_argument("--op", default=None, help="collective of logs that do not say (old logs without the "
                                              "'Collective test starting' line), e.g. all_gather, or the "
                                              "binary's stem, e.g. alltoall")
    p.add_argument("--citation", action="append", default=[], metavar="SOURCE",
                   help="where the numbers were published: a URL, or a document and page (repeatable); makes the "
                        "profile source: published")
    p.add_argument("--placement", choices=("both", "out", "in"), default="both",
                   help="which nccl-tests columns to fit: out-of-place, in-place or both (default)")
    p.add_argument("--devices-per-node", type=int, default=None, metavar="N",
                   help="devices in one node when the logs ran on a subset of them (default: the most ranks the "
                        "rank lines put on one host)")
    p.add_argument("--fabric", choices=FABRICS, default=None,
                   help="the links the logs ran over (recorded on every entry); nvswitch: group sizes the logs did "
                        "not measure keep the measured latency (NCCL's switch latency model) instead of ring scaling")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=_run)
    from .moe_import import register as register_moe_table

    register_moe_table(isub)


def _run(args: argparse.Namespace) -> int:
    from accelcal.collectives.nccl_tests import NcclTestsError

    from .naming import profile_target

    profile_target(args.out, args.name, {})  # one naming scheme: a .yaml --out whose stem is the profile's name

    command = "accelcal import nccl-tests " + " ".join(
        [*args.files, "--out", args.out] + (["--name", args.name] if args.name else [])
        + (["--scope", args.scope] if args.scope else []) + (["--op", args.op] if args.op else [])
        + [x for c in args.citation for x in ("--citation", c)]
        + (["--placement", args.placement] if args.placement != "both" else [])
        + (["--devices-per-node", str(args.devices_per_node)] if args.devices_per_node is not None else [])
        + (["--fabric", args.fabric] if args.fabric else []))
    try:
        prof = import_profile(args.files, args.name, args.citation, args.out, args.scope, args.op, args.force,
                              command, args.placement, progress=lambda m: print(f"[import] {m}"),
                              devices_per_node=args.devices_per_node, fabric=args.fabric)
    except NcclTestsError as exc:
        raise ValueError(str(exc)) from None  # accelcal.cli.main prints it as every input error (exit 2)
    flagged = sum(bool(c.quality and c.quality.flags) for c in prof.collectives)
    print(f"[import] wrote {args.out}: {len(prof.collectives)} collective fit(s), source {prof.identity.source}, "
          f"{flagged} flagged (accelcal show {args.out})")
    if not args.citation:
        # without a citation the logs are taken as the user's own runs; someone else's (a transcription, a log
        # from an issue or a paper) is published data and must say where it was published
        print(f"[import] note: no --citation, so the profile is labelled measured (your own run); if these logs "
              f"are someone else's, import them again with --citation URL --force to label them published",
              file=sys.stderr)
    return 0
