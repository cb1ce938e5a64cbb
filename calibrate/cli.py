"""``accelcal calibrate | show | compare | plot | export``: measure, fit, inspect and export profiles.

    $ accelcal calibrate --device cpu --quick --nproc 2 --out profiles/cpu.yaml
    $ accelcal calibrate --from-results results/kernels.csv results/collectives.csv --out profiles/cpu.yaml
    $ accelcal show profiles/cpu.yaml
    $ accelcal compare profiles/old.yaml profiles/new.yaml
    $ accelcal plot profiles/cpu.yaml --out plots/
    $ accelcal export profiles/h100.yaml --format configurator --datasheet profiles/datasheet/h100-sxm.yaml
    $ accelcal export profiles/nvidia-h200.yaml --format aiconfigurator --out aic/ --datasheet profiles/datasheet/h200-sxm.yaml

torch is imported only inside the ``calibrate`` handler (measuring needs it);
show/compare/plot/export run without it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable

from .export import FORMATS as EXPORT_FORMATS
from accelcal.exitcodes import EXIT_OK, EXIT_REGRESSION
from accelcal.output import add_format_option, print_json

from .naming import profile_target

__all__ = ["register"]


def register(sub: argparse._SubParsersAction, bench_sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("calibrate", help="measure kernels + collectives, fit, write a profile and its raw data",
                       description="Run the kernel suite and the collective sweep (or read earlier results), fit the "
                                   "models and write the profile atomically. A failed run never replaces an existing profile.")
    c.add_argument("--device", default=None, help="device to measure (cpu, cuda, cuda:0, ...); default: the accelerator if any")
    g = c.add_mutually_exclusive_group()
    g.add_argument("--quick", dest="preset", action="store_const", const="quick", help="short sweep (default)")
    g.add_argument("--full", dest="preset", action="store_const", const="full", help="long sweep, more sizes and samples")
    g.add_argument("--smoke", dest="preset", action="store_const", const="smoke",
                   help="seconds-long sweep for tests and run_bench.sh --test-mode (not for planning)")
    c.set_defaults(preset=None)  # None: --quick, unless --from-results (which measures nothing)
    c.add_argument("--nproc", type=int, default=None,
                   help="ranks for the collective sweep (default: devices on an accelerator node, 2 on a CPU); < 2 skips "
                        "collectives. On a CPU a device is one rank's share: the kernels run with cores // nproc threads, "
                        "and the profile gets devices_per_node = nproc, memory = RAM / nproc, threads_per_device")
    c.add_argument("--out", default=None,
                   help="profile to write (default: profiles/<name>.yaml); its stem is the profile's identity.name")
    c.add_argument("--raw-dir", default=None,
                   help="folder for the raw results (default: <out-stem>-raw/ next to the profile)")
    c.add_argument("--from-results", nargs="+", metavar="CSV", default=None,
                   help="fit these result CSVs (a kernels run's, with a collectives run's if there is one) instead of "
                        "measuring")
    c.add_argument("--name", default=None,
                   help="profile name = file stem (default: <host>-<device>, e.g. node7-cuda0; must match --out's stem)")
    c.add_argument("--keep-partial", action="store_true",
                   help="keep (and name) the raw folder of a failed or interrupted run instead of removing it")
    c.add_argument("--quiet", action="store_true", help="no progress bars or per-stage progress lines")
    c.add_argument("--force", action="store_true",
                   help="replace an existing --out profile that a measuring run would otherwise refuse (another "
                        "device type's, or a published or datasheet profile); with --from-results: replace any "
                        "existing profile (refused without it)")
    c.add_argument("--for-model", default=None, metavar="NAME[,NAME...]",
                   help="also sweep these models' GEMM shapes (QKV, output, gate/up, down, experts, router, LM head) "
                        "divided by each --tp degree (preset names or config YAMLs); the profile records the coverage")
    from accelcal.kernels.model_shapes import QUICK_FOR_TP

    c.add_argument("--tp", default=None, metavar="T[,T...]",
                   help=f"TP degrees for --for-model (default: {','.join(map(str, QUICK_FOR_TP))})")
    c.set_defaults(func=_calibrate)

    s = sub.add_parser("show", help="summarise a profile with units and fit quality",
                       description="Summarise a profile: where its numbers come from (measured, published, datasheet), "
                                   "each fitted quantity with units, and every fit's quality flags.")
    s.add_argument("profile", help="profile YAML")
    add_format_option(s)
    s.set_defaults(func=_show)

    cm = sub.add_parser("compare", help="what moved between two profiles beyond measurement noise",
                        description="Compare two profiles of a node (e.g. before and after a driver update): the "
                                    "quantities that moved beyond their fits' own noise, and predicted times that got "
                                    f"slower (exit {EXIT_REGRESSION} with --fail-on-regression).")
    cm.add_argument("old", help="earlier profile YAML")
    cm.add_argument("new", help="later profile YAML")
    cm.add_argument("--all", action="store_true", help="also list quantities that stayed within noise")
    add_format_option(cm)
    cm.add_argument("--fail-on-regression", action="store_true",
                    help=f"exit {EXIT_REGRESSION} when a predicted time got slower beyond measurement noise (for CI)")
    cm.set_defaults(func=_compare)

    pl = sub.add_parser("plot", help="PNG plots: roofline, GEMM efficiency per dtype, bandwidth and busbw vs size "
                                     "(needs matplotlib)",
                        description="Draw a profile's fits against its raw measurements as PNG files: roofline, GEMM "
                                    "efficiency per dtype, memory bandwidth and collective busbw vs message size "
                                    "(needs matplotlib: pip install -e '.[plot]').")
    pl.add_argument("profile", help="profile YAML")
    pl.add_argument("--out", default=None,
                    help="output folder (default: results/<profile-stem>-plots/, beside the run's results, not in profiles/)")
    pl.add_argument("--datasheet", default=None,
                    help="datasheet profile whose bandwidths are drawn as reference lines on the memory bandwidth "
                         "and collective busbw figures (default: the shipped one for this device, if any)")
    pl.set_defaults(func=_plot)

    ex = sub.add_parser("export", help="export a profile for inference configurators (aiconfigurator system + perf tables)",
                        description="Write a profile's measured figures in another tool's format: 'configurator', "
                                    "generic hardware fields (peaks, bandwidths, latencies) with a note per field "
                                    "and the fields it lacks; 'aiconfigurator', a system YAML and its perf tables "
                                    "(GEMM, attention, NCCL collectives) for aiconfigurator --systems-paths. "
                                    "Measured and fitted rows are labelled; a field the profile cannot supply is "
                                    "listed as missing, or copied with --fill-from and listed as a warning.")
    ex.add_argument("profile", help="profile YAML")
    ex.add_argument("--format", default="configurator", choices=list(EXPORT_FORMATS),
                    help="configurator (default): generic hardware fields (YAML); aiconfigurator: "
                         "DIR/systems/<name>.yaml and its perf tables, for aiconfigurator --systems-paths DIR/systems")
    ex.add_argument("--datasheet", default=None,
                    help="datasheet profile: the peak bandwidth / FLOP/s the measured figures are scaled against")
    ex.add_argument("--out", default=None,
                    help="configurator: write YAML here (atomically) instead of printing it; aiconfigurator: the output "
                         "folder (required)")
    ex.add_argument("--fill-from", default=None, metavar="AIC_SYSTEM_YAML",
                    help="aiconfigurator: copy fields the profile cannot supply (nccl_mem, other_mem, inter_node_bw, ...) "
                         "from this aiconfigurator system YAML; each copy is listed as a warning")
    ex.add_argument("--backend", default=None, choices=["vllm", "sglang", "trtllm"],
                    help="aiconfigurator: the backend the tables are filed under (default vllm: plain torch kernels)")
    from .compose import add_profile_arguments

    # the device profile is the positional PROFILE; its fabric (NCCL tables, intra/inter-node bandwidth) can come
    # from an interconnect profile, as plan and predict compose them
    add_profile_arguments(ex, None)
    ex.add_argument("--force", action="store_true",
                    help="configurator: replace an existing --out file (never the profile being exported); "
                         "aiconfigurator: write into a folder that already holds an export (its index and version "
                         "files are replaced; other systems' files in it stay, unlisted)")
    ex.set_defaults(func=_export)


def _show(args: argparse.Namespace) -> int:
    from .profile import Profile
    from .show import format_profile, profile_to_json

    p = Profile.load(args.profile)
    if args.format == "json":
        print_json(profile_to_json(p))
    else:
        print(format_profile(p))
    return EXIT_OK


def _staged(feed: Callable[[str], None], staging: Path, final: Path) -> Callable[[str], None]:
    """``feed`` with the sweep's staging folder left out of its lines: the files it names move to ``final`` only
    when the profile is written (a failed run removes them), so the lines say that instead of a path that will
    not exist."""
    # the absolute spelling first: the relative one is a tail of it
    spelled = sorted({f"{staging}{os.sep}", f"{staging.resolve()}{os.sep}"}, key=len, reverse=True)

    def say(line: str) -> None:
        if any(p in line for p in spelled):
            for p in spelled:
                line = line.replace(p, "")
            line += f" (staged: into {final} when the profile is written)"
        feed(line)
    return say


def _compare(args: argparse.Namespace) -> int:
    from .compare import changes_to_json, compare_profiles, format_changes, missing_in_new, regressions
    from .profile import Profile

    old, new = Profile.load(args.old, what="OLD profile"), Profile.load(args.new, what="NEW profile")
    if old.is_interconnect != new.is_interconnect:
        kind = {True: "an interconnect profile (collectives only)", False: "a device profile"}
        raise ValueError(f"OLD {args.old} is {kind[old.is_interconnect]} and NEW {args.new} is "
                         f"{kind[new.is_interconnect]}: compare takes two profiles of the same kind")
    notes = []
    if old.identity.device_name != new.identity.device_name:
        notes.append(f"comparing different devices: {old.identity.device_name!r} vs {new.identity.device_name!r}")
    ov, nv = old.identity.versions or {}, new.identity.versions or {}
    if ov.get("cpu_signature") and nv.get("cpu_signature") and ov["cpu_signature"] != nv["cpu_signature"]:
        # one model name ("AMD EPYC") covers generations whose vector units differ
        notes.append(f"different CPUs under one name: {ov['cpu_signature']!r} vs {nv['cpu_signature']!r}")
    elif (old.identity.device_type == new.identity.device_type == "cpu"
          and bool(ov.get("cpu_signature")) != bool(nv.get("cpu_signature"))):
        # one model name covers generations whose vector units differ, and one side cannot say which it ran on
        side = "OLD" if not ov.get("cpu_signature") else "NEW"
        notes.append(f"{side} records no CPU signature (measured before accelcal recorded family, model and vector "
                     f"units), so whether the two CPUs differ cannot be told: a large change can be the CPU's")
    ot, nt = old.identity.threads_per_device, new.identity.threads_per_device
    if ot and nt and ot != nt:
        # calibrate makes a CPU device one rank's share of the cores: another --nproc is another device
        notes.append(f"the CPU device is another share of the cores: {ot} vs {nt} thread(s) per device (calibrate "
                     f"--nproc N makes a device one rank's share), so every per-device figure changes with it")
    if old.identity.devices_per_node != new.identity.devices_per_node:
        notes.append(f"devices per node differ: {old.identity.devices_per_node} vs {new.identity.devices_per_node}")
    priors = [side for side, prof in (("OLD", old), ("NEW", new)) if prof.is_datasheet]
    if priors:
        # a datasheet's figures are the vendor's peaks: a measurement is slower than them by design, not a regression
        notes.append(f"{' and '.join(priors)} {'is a datasheet prior' if len(priors) == 1 else 'are datasheet priors'} "
                     f"(the vendor's peak figures, not measurements): the changes show how far the measurement is "
                     f"from the peak, and --fail-on-regression does not judge them")
    if old.method_version != new.method_version:
        notes.append(f"measured by different methods (method_version {old.method_version} vs {new.method_version}): "
                     f"part of a change can be the method's")
    note = "; ".join(notes) or None
    changes = compare_profiles(old, new)
    slower = regressions(changes)
    lost = missing_in_new(old, new)
    gained = missing_in_new(new, old)  # what NEW measures that OLD did not: nothing to compare it with
    if args.format == "json":
        print_json({"old_profile": args.old, "new_profile": args.new, "note": note,
                    "regressions": len(slower), "missing_in_new": lost, "only_in_new": gained,
                    "changes": changes_to_json(changes, only_significant=not args.all)})
    else:
        if note:
            print(f"note: {note}")
        print(format_changes(changes, only_significant=not args.all))
        if lost:
            print(f"missing in NEW ({len(lost)}): " + ", ".join(lost))
        if gained:
            print(f"only in NEW ({len(gained)}, not compared): " + ", ".join(gained))
    if args.fail_on_regression and (slower or lost) and not priors:
        print(f"accelcal compare: {len(slower)} predicted time(s) slower beyond noise"
              + "".join(f"; {c.quantity} {c.rel_change:+.1%}" for c in slower[:5])
              + (f"; {len(lost)} measurement(s) NEW lacks: {', '.join(lost[:5])}" if lost else ""), file=sys.stderr)
        return EXIT_REGRESSION
    return EXIT_OK


def _plot(args: argparse.Namespace) -> int:
    from accelcal.preflight import check_dir

    from .compose import reference_datasheet
    from .plot import plot_profile
    from .priors import find_datasheet
    from .profile import Profile

    p = Profile.load(args.profile)
    if args.datasheet:
        ds, warns = reference_datasheet(args.datasheet, p, "plot draws a datasheet's peaks as reference lines")
        for w in warns:
            print(f"warning: {w}", file=sys.stderr)
    else:
        ds = find_datasheet(p)
    out = args.out or str(Path("results") / f"{Path(args.profile).stem}-plots")
    check_dir(out, what="--out")  # a file where the folder goes, a read-only place: said before any figure is drawn
    notes: list[str] = []
    paths = plot_profile(p, out, profile_path=args.profile, datasheet=ds, notes=notes)  # no matplotlib: cli.main says so
    for path in paths:
        print(f"wrote {path}")
    for note in notes:
        print(f"not drawn: {note}")
    return 0


def _export(args: argparse.Namespace) -> int:
    import yaml

    from accelcal.atomic import atomic_write_text

    from .export import export_configurator
    from .profile import Profile

    from .compose import require_device_profile

    if args.format != "aiconfigurator":
        # options that only shape the aiconfigurator tree: taking them silently would hide that nothing used them
        used = [flag for flag, v in (("--fill-from", args.fill_from), ("--backend", args.backend)) if v is not None]
        if used:
            raise ValueError(f"{' and '.join(used)}: only for --format aiconfigurator (whose perf tables are filed "
                             f"under a backend, and whose missing fields can be copied from a system YAML); the "
                             f"{args.format} format does neither: it lists the fields the profile cannot supply")
    if args.force and not args.out:
        raise ValueError("--force replaces an existing --out; without --out the export is printed, so there is "
                         "nothing to replace: add --out FILE, or drop --force")
    p = Profile.load(args.profile)
    require_device_profile(p, "PROFILE", fabric_flags=False)  # no device for a configurator to describe
    if args.interconnect or args.inter_node_profile:
        from .compose import compose, fabric_device_mismatch

        p = compose(p, Profile.load(args.interconnect, what="--interconnect") if args.interconnect else None,
                    Profile.load(args.inter_node_profile, what="--inter-node-profile")
                    if args.inter_node_profile else None)
        for line in fabric_device_mismatch(p):  # as predict and plan warn: the exported fabric is not this node's
            print(f"warning: {line}", file=sys.stderr)
    ds = None
    if args.datasheet:
        from .compose import reference_datasheet

        # a measured profile as the reference would make every scaling factor ~1
        ds, warns = reference_datasheet(args.datasheet, p, "the export scales the measured figures against a "
                                                           "datasheet profile's peaks")
        for w in warns:  # a reference for another device: allowed (a what-if), but every reference figure changes
            print(f"warning: {w}", file=sys.stderr)
    if args.out and args.format == "configurator":
        from accelcal.preflight import check_file

        if os.path.isdir(args.out):
            raise ValueError(f"--out {args.out}: is a directory; the configurator format writes one YAML file")
        for flag, src in (("PROFILE", args.profile), ("--datasheet", args.datasheet),
                          ("--interconnect", args.interconnect), ("--inter-node-profile", args.inter_node_profile)):
            if src and os.path.exists(args.out) and os.path.samefile(args.out, src):
                # the export is another format: writing it over its own input would destroy the profile
                raise ValueError(f"--out {args.out}: is the {flag} file being exported; write the export elsewhere")
        if os.path.exists(args.out) and not args.force:
            raise ValueError(f"--out {args.out}: exists; pass --force to replace it (the export is written "
                             f"atomically: the old file stays intact until the new one is complete)")
        check_file(args.out, what="--out")
    if args.out and args.format == "aiconfigurator" and os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ValueError(f"--out {args.out}: is a file; the aiconfigurator format writes a folder")
    if args.format == "aiconfigurator":
        return _export_aiconfigurator(args, p, ds)
    text = yaml.safe_dump(export_configurator(p, ds), sort_keys=False)
    if args.out:
        atomic_write_text(args.out, text)
        print(f"wrote {args.out}")
    else:
        print(text, end="")
    return 0


def _export_aiconfigurator(args: argparse.Namespace, p, ds) -> int:
    from .export_aiconfigurator import export_aiconfigurator

    if not args.out:
        print("accelcal export: error: --format aiconfigurator needs --out DIR (it writes a folder)", file=sys.stderr)
        return 2
    from accelcal.preflight import check_dir

    check_dir(args.out, what="--out")
    index = Path(args.out) / "accelcal_export.yaml"
    if index.exists() and not args.force:
        # its index and query_versions.yaml name one system: a second export would leave the first one's files
        # unlisted there
        raise ValueError(f"--out {args.out}: already holds an export ({index}); choose another folder, or pass "
                         f"--force to replace it")
    if args.fill_from:  # before the export folder gets any file: a folder, pipe or missing file named as such
        from accelcal.safe_io import check_regular_file

        check_regular_file(args.fill_from, what="--fill-from (an aiconfigurator system YAML)")
    # no pyarrow: ModuleNotFoundError, which accelcal.cli.main turns into the 'parquet' extra's one line
    res = export_aiconfigurator(p, args.out, profile_path=args.profile, datasheet=ds, fill_from=args.fill_from,
                                backend=args.backend or "vllm")
    for w in res.warnings:
        print(f"warning: {w}", file=sys.stderr)
    for path, n in res.tables.items():
        print(f"wrote {res.systems_dir / path} ({n} rows)")
    print(f"wrote {res.systems_dir / (res.system + '.yaml')}")
    if res.missing_required:
        # aiconfigurator refuses a system YAML without these (system_spec.rs has no default for them)
        print(f"not loadable by aiconfigurator yet: {res.system}.yaml lacks {', '.join(res.missing_required)}, "
              f"which aiconfigurator requires and this profile does not measure; export again with --fill-from an "
              f"aiconfigurator system YAML of this node (--force to replace this export)")
    if res.tables and not res.missing_required:
        print(f"use: aiconfigurator cli estimate --systems-paths {res.systems_dir} --system {res.system} "
              f"--backend {res.backend} --perf-db-version {res.version} --model ...")
    elif not res.tables:
        # no perf tables: aiconfigurator's estimate needs them, so no command is offered that would fail there
        print(f"no perf tables written (see the warnings): {res.system}.yaml describes the system only; export a "
              f"measured profile for tables aiconfigurator can estimate from")
    return 0


def _split_results(paths: list[str]):
    from accelcal.results import read_results

    frames, kern_env, other_env = [], {}, {}
    seen: dict[Path, str] = {}
    devices: dict[tuple[str, str], str] = {}
    for p in paths:
        key = Path(p).resolve()
        if key in seen:
            raise ValueError(f"--from-results: {p} is given twice (as {seen[key]}); each file's rows would be fitted twice")
        seen[key] = p
        df = read_results([p])
        frames.append(df)
        envp = Path(p).with_suffix(".env.json")
        if envp.exists():
            from accelcal.safe_io import load_json

            e = load_json(envp, what="environment file", max_bytes=16 * 2**20, expect=dict)
            dev = (str(e.get("device_type", "")), str(e.get("device_name", "")))
            if devices and dev not in devices:
                other, where = next(iter(devices.items()))
                raise ValueError(f"--from-results: {p} was measured on {dev[1]} ({dev[0]}) but {where} on {other[1]} "
                                 f"({other[0]}) (their .env.json); one profile describes one device type")
            devices.setdefault(dev, p)
            # Kernel provenance wins: it describes the device the GEMMs ran on.
            if (df["suite"] == "kernels").any():
                kern_env = kern_env or e
            else:
                other_env = other_env or e
    import pandas as pd

    df = pd.concat(frames, ignore_index=True, sort=False)
    return df[df["suite"] == "kernels"], df[df["suite"] == "collectives"], dict(kern_env or other_env)


def _calibrate(args: argparse.Namespace) -> int:
    """Run the calibration; a failed or interrupted run removes the raw folder it created (and says so)."""
    created: list[Path] = []
    ok = False
    try:
        rc = _calibrate_run(args, created)
        ok = rc == 0
        return rc
    finally:
        import shutil

        for d in created:
            if not ok and d.exists() and not args.keep_partial:
                shutil.rmtree(d, ignore_errors=True)
                print(f"[calibrate] removed the partial raw folder {d}", file=sys.stderr)
            elif not ok and d.exists() and d.name.startswith(".partial-"):
                # the staging folder holds them (the folders made above it stay with it, unnamed)
                print(f"[calibrate] partial raw results kept in {d} (--keep-partial)", file=sys.stderr)


def _check_measuring_options(args: argparse.Namespace) -> None:
    """Refuse options that would be silently ignored; fill in the measuring default --quick (--tp's default is
    kernels.model_shapes.parse_for_model's)."""
    if args.from_results:
        given = [opt for opt, on in (("--device", args.device is not None),
                                     (f"--{args.preset}", args.preset is not None),
                                     ("--nproc", args.nproc is not None),
                                     ("--for-model", args.for_model is not None),
                                     ("--tp", args.tp is not None),
                                     ("--keep-partial", args.keep_partial)) if on]
        if given:
            raise ValueError(f"--from-results refits results measured earlier, so {', '.join(given)} (options of a "
                             f"measuring run) would change nothing: drop {'it' if len(given) == 1 else 'them'}, or "
                             f"measure again without --from-results")
        return
    if args.tp is not None and not args.for_model:
        raise ValueError(f"--tp {args.tp}: the TP degrees of --for-model's shapes; without --for-model the sweep has "
                         f"no model shapes to divide: add --for-model NAME, or drop --tp")
    args.preset = args.preset or "quick"


def _calibrate_run(args: argparse.Namespace, created: list[Path]) -> int:
    from accelcal.preflight import check_dir, check_file

    from .fit import fit_profile
    from .profile import Profile, ProfileError

    _check_measuring_options(args)
    command = "accelcal " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("accelcal") else \
        "accelcal calibrate " + " ".join(_argv_echo(args))
    if args.nproc is not None and args.nproc < 0:
        raise ValueError(f"--nproc must be >= 0, got {args.nproc}")
    if args.out:  # before torch is even imported
        check_file(args.out, what="--out", need_bytes=4 * 2**20)
    if args.from_results:
        kern, coll, env = _split_results(args.from_results)
        if kern.empty:
            raise ValueError(f"--from-results: no kernels results among {args.from_results} (only "
                             f"{'collectives' if not coll.empty else 'other'} rows); a device profile is "
                             f"fitted from a kernels run (GEMMs, memory, overheads): add its kernels.csv, with the "
                             f"collectives CSV beside it if you have one")
        if not env:
            raise ValueError(f"--from-results: no <stem>.env.json beside {args.from_results}; the profile needs the "
                             f"provenance (device, memory, versions) it records")
        raw_files = [str(Path(p).resolve()) for p in args.from_results]
        measured_by = str(env.get("command") or "") if isinstance(env, dict) else ""
        if measured_by:
            # the run that measured the results, as its env recorded it: a refit keeps what they are (a --smoke
            # sweep stays flagged not for planning: compose.smoke_sweep reads the command)
            command += f" (refitting the results of: {measured_by})"
        target = profile_target(args.out, args.name, env, args.raw_dir)
        out = target.path
        if out.exists() and not args.force:
            raise ValueError(f"{out} exists; refitting saved results would replace it: pass --force, or --out "
                             f"another path")
        check_file(out, what="--out", need_bytes=4 * 2**20)
    else:
        import socket

        from accelcal.kernels.device import resolve_device
        from accelcal.kernels.suite import run_suite

        dev = resolve_device(args.device)
        target = profile_target(args.out, args.name, {"host": socket.gethostname(), "device": dev.spec},
                                args.raw_dir)
        out, final_raw = target.path, target.raw_dir
        # Every destination before any measuring: a read-only folder or a full disk fails now, not after minutes.
        check_file(out, what="--out", need_bytes=4 * 2**20)
        _check_replaced(out, dev, args.force)
        check_dir(final_raw, what="--raw-dir", need_bytes=64 * 2**20)
        # The run measures into a staging folder inside the raw folder (one file system, so the files move by
        # rename); they replace the raw folder's only with the profile that lists them (_install_raw), so a failed
        # or interrupted run leaves the existing profile and its raw data as they were.
        import tempfile

        missing = [a for a in (final_raw, *final_raw.parents) if not a.exists()]
        final_raw.mkdir(parents=True, exist_ok=True)
        if missing:  # folders this run made: a failed run takes them away again
            created.append(missing[-1])
        for stale in sorted(final_raw.glob(".partial-*")):
            # a run killed outright (SIGKILL, power) cannot remove its staging folder; another run may be using
            # one right now, so it is named, not removed
            print(f"[calibrate] note: {stale} is a staging folder of another run (an interrupted one leaves it); "
                  f"nothing reads it: remove it once no calibrate is running here", file=sys.stderr)
        raw_dir = Path(tempfile.mkdtemp(prefix=".partial-", dir=final_raw))
        created.append(raw_dir)
        nproc = args.nproc if args.nproc is not None else (dev.count() if not dev.is_cpu else 2)
        from accelcal.collectives.distenv import in_distributed_env

        if nproc >= 2 and not in_distributed_env():  # the collective sweep's ranks: refused now, not after the kernels
            from accelcal.collectives.launch import check_local_launch

            check_local_launch(nproc, dev.type)
        threads = threads_before = None
        if dev.is_cpu:
            import torch

            # A CPU "device" is one rank's share of the cores: the planner runs TP/PP ranks as processes on
            # this node, each with cores // nproc threads, so the kernels are measured the same way.  Set
            # before the suite captures the environment so torch_num_threads records it.
            cores = os.cpu_count() or 1
            share = cores // max(nproc, 1)
            threads, threads_before = max(1, share), torch.get_num_threads()
            torch.set_num_threads(threads)
            print(f"[calibrate] CPU device = one rank's share: {cores} cores // {max(nproc, 1)} rank(s) = {share}"
                  + (" thread(s)" if share >= 1 else f", at least 1 thread each ({nproc} ranks share {cores} cores: "
                     f"the collective timings include the scheduler)"))
        preset = sweep_preset(args.preset, dev.type, args.for_model, args.tp)
        print(f"[calibrate] kernels on {dev.spec} ({args.preset}); raw data -> {final_raw}")
        from accelcal.progress import LOG_EVERY_S, StageProgress

        from accelcal.machine_load import busy_note, cpu_seconds

        load_start = (cpu_seconds(), time.monotonic())  # what other processes use while this run measures
        try:
            # in a log (run_bench.sh tees one) a GEMM stage of a minute says how far it is every 20 s
            rs = run_suite(device=dev, preset=preset, progress=None,
                           bar=StageProgress("calibrate kernels", quiet=args.quiet, log_every_s=LOG_EVERY_S))
        finally:
            if threads_before is not None:  # the share is for the kernel suite; callers keep their own setting
                torch.set_num_threads(threads_before)
        if threads is not None:
            rs.env["threads_per_device"] = threads
            rs.env["devices_per_node"] = max(nproc, 1)
        paths = rs.write(raw_dir, "kernels")
        kern, env = rs.frame(), dict(rs.env)
        raw_files = [str(paths["csv"])]
        coll = None
        if nproc < 2:
            print(f"[calibrate] note: collectives skipped: --nproc {nproc} < 2 ranks"
                  + (" and no accelerator" if dev.is_cpu else ""))
        else:
            from accelcal.collectives.launch import run_sweep

            from accelcal.collectives.presets import FIT_PRESETS, fit_dtype

            # Only what the profile fits (one dtype, every op, factor-2 sizes, >= 30 samples per case); the
            # full ops x dtypes matrix is `accelcal bench collectives`.
            import pandas as pd

            ctype = "cpu" if dev.is_cpu else dev.type
            fp = FIT_PRESETS[args.preset]
            frames = []
            rounds = fp.cpu_rounds if dev.is_cpu else 1
            for r in range(rounds):
                # Each round is a fresh launch (new rank processes, new thread placement); the fit reduces the
                # rounds to the median of their medians per size.
                stem = "collectives" if rounds == 1 else f"collectives-round{r + 1}"
                print(f"[calibrate] collectives on {nproc} ranks ({dev.type}), {fit_dtype(ctype)}, preset {fp.name}, "
                      f"round {r + 1}/{rounds}")
                bar = StageProgress("calibrate collectives", quiet=args.quiet)
                try:
                    frames.append(run_sweep(nproc, device_type=ctype, preset=fp.name, dtypes=[fit_dtype(ctype)],
                                            out_dir=raw_dir, progress=_staged(bar.lines(f"round {r + 1}/{rounds}"),
                                                                              raw_dir, final_raw), stem=stem,
                                            orphan_cleanup=[str(raw_dir.resolve())]))
                    bar.close()
                except RuntimeError as exc:  # a rank died or timed out: no profile from a partial run
                    bar.close()
                    print(f"accelcal calibrate: error: collective sweep failed: {exc}; {out} not written"
                          + (" (the existing profile is kept)" if out.exists() else ""), file=sys.stderr)
                    return 1
                csv = raw_dir / f"{stem}.csv"
                if csv.exists():
                    raw_files.append(str(csv))
            coll = pd.concat(frames, ignore_index=True, sort=False) if frames else None
    if not args.from_results:
        busy = busy_note(load_start[0], time.monotonic() - load_start[1], "the measurements")
        if busy:  # the fits take the inflated times at face value: say so where the run is watched
            print(f"[calibrate] WARNING: {busy}", file=sys.stderr)
    env["profile_name"] = target.name  # identity.name is the file stem (calibrate/naming.py)
    print("[calibrate] fitting")
    profile = fit_profile(kern, coll, env, command, progress=lambda m: print(f"[calibrate]   {m}"))
    copies: list[Path] = []
    new_raw_dir = args.from_results and not target.raw_dir.exists()
    if not args.from_results:  # the files as they will be named once installed beside the profile
        raw_files = [str(target.raw_dir / Path(f).name) for f in raw_files]
    try:
        if args.from_results:
            raw_files = _results_beside(raw_files, out, target.raw_dir, copies)
        profile.identity.raw_data = [os.path.relpath(Path(f).resolve(), out.parent.resolve()) for f in raw_files]
        if args.from_results:
            _save_replacing(profile, out)
        else:
            _install_raw(raw_dir, target.raw_dir, out, lambda: _save_replacing(profile, out), created)
    except BaseException:
        for c in copies:  # a profile that was not written records no copies: take them back
            c.unlink(missing_ok=True)
        if new_raw_dir and target.raw_dir.is_dir() and not any(target.raw_dir.iterdir()):
            target.raw_dir.rmdir()
        raise
    flagged = sum(bool(q.flags) for q in _all_q(profile))
    print(f"[calibrate] wrote {out}: {len(profile.compute)} GEMM dtype(s), {len(profile.memory)} memory pattern(s), "
          f"{len(profile.collectives)} collective fit(s); {flagged} of {len(_all_q(profile))} fits flagged (see "
          f"accelcal show {out})")
    return 0


def _listed_raw_files(out: Path, raw_dir: Path) -> set[str]:
    """Names of the files in ``raw_dir`` that the profile at ``out`` lists (identity.raw_data) and their sidecars
    (the same stem's .json, .parquet and .env.json): the raw data that profile owns; empty when there is no
    loadable profile there."""
    from .profile import Profile, ProfileError

    try:
        listed = Profile.load(out).identity.raw_data if out.exists() else []
    except (ProfileError, OSError, ValueError):
        return set()
    home = raw_dir.resolve()
    stems = {Path(f).stem for f in listed if (out.parent / f).resolve().parent == home}
    return {p.name for p in raw_dir.iterdir() if p.is_file() and p.name.split(".", 1)[0] in stems}


def _install_raw(stage: Path, raw_dir: Path, out: Path, save_profile, created: list[Path]) -> None:
    """Move a run's raw files from ``stage`` (a folder inside ``raw_dir``) into ``raw_dir`` and save the profile
    that lists them (``save_profile``), as one step: the files they replace wait in a backup folder until the
    profile is written, and come back, with the new files taken out again, if it is not.  Afterwards the stage and
    the backup are gone, and so are the files the replaced profile at ``out`` listed that the new run did not write
    again (other files in the folder stay: another profile's, or a bench run's)."""
    import shutil
    import tempfile

    new = sorted(p.name for p in stage.iterdir() if p.is_file())
    owned = _listed_raw_files(out, raw_dir)
    backup = Path(tempfile.mkdtemp(prefix=".replaced-", dir=raw_dir))
    moved_old: list[str] = []
    moved_new: list[str] = []
    try:
        for name in new:
            if (raw_dir / name).exists():
                os.replace(raw_dir / name, backup / name)
                moved_old.append(name)
            os.replace(stage / name, raw_dir / name)
            moved_new.append(name)
        save_profile()
    except BaseException:
        for name in moved_new:
            os.replace(raw_dir / name, stage / name)
        for name in moved_old:
            os.replace(backup / name, raw_dir / name)
        shutil.rmtree(backup, ignore_errors=True)
        raise
    created.clear()  # the profile is written: nothing of this run is partial any more
    shutil.rmtree(backup, ignore_errors=True)
    shutil.rmtree(stage, ignore_errors=True)
    stale = sorted(owned - set(new))
    for name in stale:
        (raw_dir / name).unlink(missing_ok=True)
    if stale:
        print(f"[calibrate] removed {len(stale)} raw file(s) the replaced profile listed that this run did not "
              f"write again ({', '.join(stale[:4])}{', ...' if len(stale) > 4 else ''})")
    print(f"[calibrate] raw data: {len(new)} file(s) in {raw_dir}")


def _results_beside(files: list[str], out: Path, raw_dir: Path, copies: list[Path]) -> list[str]:
    """The --from-results inputs as the profile records them: a file already in the profile's raw folder
    (``<stem>-raw/``) stays where it is; any other is copied there with its ``<stem>.env.json``, so that the
    profile's raw data lives beside it in its own folder and never outside the profile's folder (``accelcal
    export`` reads only files inside it, and a folder moved or shared whole keeps its data).  Nothing there is
    overwritten: a file already there with the same bytes is used as it is, a different one keeps its name and
    the copy takes the next free one (``kernels-2.csv``).  Each new file is appended to ``copies``."""
    import shutil

    from accelcal.atomic import atomic_write_with

    home = raw_dir.resolve()
    kept: list[str] = []
    for f in files:
        src = Path(f).resolve()
        if src.is_relative_to(home):
            kept.append(str(src))
            continue
        env = src.with_suffix(".env.json")
        pairs = [(src, src.suffix)] + ([(env, ".env.json")] if env.exists() else [])
        for n in range(1, 1000):
            stem = src.stem if n == 1 else f"{src.stem}-{n}"
            dests = [(s, raw_dir / f"{stem}{suffix}") for s, suffix in pairs]
            if all(not d.exists() or _same_bytes(s, d) for s, d in dests):
                break
        else:
            raise ValueError(f"--from-results: no free name for {src.name} in {raw_dir} ({src.stem}-2 .. -999 taken)")
        fresh = [(s, d) for s, d in dests if not d.exists()]
        for s, d in fresh:
            atomic_write_with(d, lambda tmp, s=s: shutil.copyfile(s, tmp))
            copies.append(d)
        kept.append(str(dests[0][1]))
        how = ("copied to" if fresh else "is already, byte for byte, at") + f" {dests[0][1]}"
        print(f"[calibrate] {f} {how}" + (" with its .env.json" if fresh and len(dests) > 1 else "")
              + " (the profile records its raw data beside it)")
    return kept


def _same_bytes(a: Path, b: Path) -> bool:
    import filecmp

    return b.is_file() and filecmp.cmp(a, b, shallow=False)


def _check_replaced(out: Path, dev, force: bool) -> None:
    """Before measuring: say which profile ``out`` holds and that the run will replace it; refuse (without
    ``force``) when it is another kind of device's, not a measurement (a published or datasheet profile) or not a
    profile at all."""
    from .profile import Profile

    if not out.exists():
        return
    try:
        old = Profile.load(out)
    except (ValueError, OSError) as exc:  # ProfileError is a ValueError
        if not force:  # a damaged profile, or a file that never was one (a README): replaced only when asked
            raise ValueError(f"--out {out} exists but does not load as a profile ({str(exc).splitlines()[0][:160]}); "
                             f"pass --force to replace it, or --out another path") from None
        print(f"[calibrate] note: {out} exists but does not load as a profile; this run replaces it when it ends "
              f"(--force)", file=sys.stderr)
        return
    i = old.identity
    what = f"{i.name}: {i.device_name} ({i.device_type}), {i.source}" + (f", {i.date}" if i.date else "")
    other = i.device_type != dev.type or i.source != "measured"
    if other and not force:
        raise ValueError(f"--out {out} holds {what}; this run measures {dev.spec}: pass --force to replace it, or "
                         f"--out another path")
    print(f"[calibrate] note: {out} holds {what}; this run replaces it when it ends (until then it stays as it is)",
          file=sys.stderr)


def _save_replacing(profile, out: Path) -> None:
    """Write ``profile`` to ``out`` atomically, saying what it replaces."""
    from .profile import Profile, ProfileError

    if out.exists():
        # An existing good profile is only replaced by a run that produced a loadable one (it did, or we
        # would have raised above); say what is being replaced.
        try:
            Profile.load(out)
            print(f"[calibrate] replacing {out} (previous profile was valid)")
        except ProfileError:
            print(f"[calibrate] replacing {out} (previous file did not load)")
    profile.save(out)


def _all_q(p):
    from .show import _qualities

    return _qualities(p)


def sweep_preset(preset: str, device_type: str, for_model: str | None, tp: str | None):
    """The kernel-suite preset (its name without ``--for-model``), plus ``--for-model`` shapes at each ``--tp``
    degree as a SuitePreset (a plan, nothing is run)."""
    if not for_model:
        return preset
    from accelcal.kernels.model_shapes import model_gemm_shapes, parse_for_model, sweep_preset_for, with_model_shapes

    p = sweep_preset_for(preset, device_type)
    models, tps = parse_for_model(for_model, tp)
    for note in model_gemm_shapes(models, tps)[1]:
        print(f"[calibrate] note: {note}")
    return with_model_shapes(p, models, tps)


def _argv_echo(args: argparse.Namespace) -> list[str]:
    out = []
    for k in ("device", "nproc", "out", "raw_dir", "name", "for_model", "tp"):
        v = getattr(args, k, None)
        if k == "tp" and not getattr(args, "for_model", None):
            continue
        if v is not None:
            out += [f"--{k.replace('_', '-')}", str(v)]
    if args.preset:
        out.append(f"--{args.preset}")
    if args.from_results:
        out += ["--from-results", *args.from_results]
    return out
