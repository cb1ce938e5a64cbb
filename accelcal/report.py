"""``accelcal report``: one self-contained HTML page about a profile and a plan on it.

    $ accelcal report profiles/nvidia-h200.yaml --model llama3-8b --out report.html
    $ accelcal report profiles/cpu-amd-epyc-2core.yaml --model tiny --batch 4 --out results/cpu-report.html
    $ accelcal report profiles/nvidia-h100.yaml --interconnect profiles/interconnect/h100-nvswitch-8.yaml \
          --model llama3.1-70b --out h100x8.html      # a multi-GPU plan: device + interconnect, as plan takes them

Sections: summary (device, provenance, headline numbers), fit quality with its
flags, the plots (PNG, inline as base64, so the file travels alone), the
validation section of the profile, and the plan (ranked layouts, why-lines,
Pareto front).  Needs the ``plot`` extra (matplotlib); written atomically.
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import html
import sys
import tempfile
from pathlib import Path
from typing import Any

from accelcal.calibrate.compose import add_profile_arguments, plan_profiles

from .exitcodes import EXIT_INFEASIBLE, EXIT_OK, EXIT_TARGETS_MISSED
from .units import fmt

__all__ = ["register", "build_report"]

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0 auto;max-width:1100px;padding:24px;
color:#1f2933;line-height:1.4}
h1{font-size:26px;margin:0 0 4px} h2{font-size:19px;border-bottom:2px solid #e4e7eb;padding-bottom:4px;margin-top:32px}
.sub{color:#616e7c;margin:0 0 16px} table{border-collapse:collapse;width:100%;font-size:13px;margin:8px 0}
th,td{border-bottom:1px solid #e4e7eb;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f5f7fa} td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.flag{color:#b42318;font-weight:600} .ok{color:#027a48} .warn{background:#fff4e5;border-left:4px solid #f79009;
padding:8px 12px;margin:8px 0} .cards{display:flex;flex-wrap:wrap;gap:12px;margin:12px 0}
.card{background:#f5f7fa;border-radius:6px;padding:10px 14px;min-width:170px} .card b{display:block;font-size:18px}
.card span{color:#616e7c;font-size:12px} figure{margin:16px 0} figure img{max-width:100%;border:1px solid #e4e7eb}
figcaption{color:#616e7c;font-size:12px}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:8px 16px} .grid figure{margin:8px 0} ul.why li{margin:2px 0;font-size:13px} code{font-size:12px}
"""


def register(sub: argparse._SubParsersAction, bench_sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="one self-contained HTML page: summary, fit quality, plots, validation, plan",
                       description="Write one HTML file (plots inline) describing PROFILE and the best plan for "
                                   "--model on it. Needs matplotlib (the plot extra). The page is written even "
                                   "when no layout fits or meets the targets; the exit code is then accelcal plan's "
                                   "(3, 4).")
    p.add_argument("profile", help="device profile YAML")
    add_profile_arguments(p, None)
    p.add_argument("--out", required=True, help="HTML file to write (atomically)")
    p.add_argument("--model", default="llama3-8b",
                   help="model for the plan: a preset name, a model config .yaml, or a Hugging Face config.json or "
                        "its folder (default: llama3-8b)")
    p.add_argument("--dtype", default=None, help="dtype to plan in (default: the model's, else the profile's)")
    p.add_argument("--nodes", type=int, default=1, help="nodes (default: 1)")
    p.add_argument("--devices-per-node", type=int, default=None, help="default: the profile's")
    p.add_argument("--prompt-len", "--isl", type=int, default=2048,
                   help="prompt tokens (default: 2048; --isl as in accelcal predict)")
    p.add_argument("--output-len", "--osl", type=int, default=256,
                   help="generated tokens (default: 256; --osl as in accelcal predict)")
    p.add_argument("--batch", type=int, default=8, help="sequences per replica (default: 8)")
    p.add_argument("--ttft", type=float, default=None, help="TTFT target, seconds")
    p.add_argument("--tpot", type=float, default=None, help="TPOT target, seconds")
    p.add_argument("--datasheet", default=None, help="datasheet profile for reference lines (default: the shipped one)")
    p.add_argument("--top", type=int, default=8, help="layouts to list (default: 8)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from accelcal.atomic import atomic_write_text
    from accelcal.calibrate.profile import Profile

    if args.top < 1:
        raise ValueError(f"--top must be >= 1 (layouts to list), got {args.top}")
    if Path(args.out).suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"--out {args.out}: the report is one HTML page; give it a .html name (it has no "
                         f"{Path(args.out).suffix or 'other'} format)")
    # as accelcal plan takes them: device numbers from PROFILE, each scope's collectives from its fabric
    prof, inter = plan_profiles(Profile.load(args.profile, what="PROFILE"),
                                Profile.load(args.interconnect, what="--interconnect") if args.interconnect else None,
                                (Profile.load(args.inter_node_profile, what="--inter-node-profile")
                                 if args.inter_node_profile else None),
                                device_flag="PROFILE")
    ds = None
    if args.datasheet:
        from accelcal.calibrate.compose import reference_datasheet

        ds, warns = reference_datasheet(args.datasheet, prof, "the report draws a datasheet's peaks as reference "
                                                              "lines and captions them so")
        for w in warns:
            print(f"warning: {w}", file=sys.stderr)
    # no matplotlib: accelcal.cli.main says which extra to install
    page, rc, why = build_report(prof, args.profile, args, datasheet=ds, inter_node=inter)
    atomic_write_text(args.out, page)
    print(f"wrote {args.out} ({len(page) / 1024:.0f} KiB, self-contained)")
    if why:  # the page is written either way; the exit code is accelcal plan's for the same plan
        print(f"accelcal report: {why}", file=sys.stderr)
    return rc


def _e(x: Any) -> str:
    return html.escape(str(x))


def _img(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{_e(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _plan(prof, args, inter_node=None):
    from accelcal.planner.cli import _pick_dtype
    from accelcal.planner.cluster import Cluster, DeviceGroup
    from accelcal.models import ModelConfig
    from accelcal.planner.search import NoFeasiblePlan, PlanOptions, plan
    from accelcal.planner.workload import Workload

    model = _pick_dtype(ModelConfig.resolve(args.model), prof, args.dtype)
    groups = [DeviceGroup(str(prof.identity.device_name), prof, args.nodes, args.devices_per_node, inter_node)]
    try:
        result = plan(model, Cluster(groups), Workload(args.prompt_len, args.output_len, args.batch, args.ttft,
                                                      args.tpot, None), PlanOptions())
    except NoFeasiblePlan as exc:
        return None, str(exc)
    return result, ""


def _summary(prof) -> str:
    from accelcal.planner.report import datasheet_note

    i = prof.identity
    cards = []
    for dt, e in prof.compute.items():
        best = max((2 * m * n * k / t for m, n, k, t in e.points if t > 0), default=None)
        cards.append((fmt(best if best else e.peak_flop_per_s, "flop_per_s"),
                      f"GEMM {dt} {'best measured' if best else 'datasheet peak'}"))
    if "copy" in prof.memory:
        cards.append((fmt(prof.memory["copy"].bandwidth_bytes_per_s, "bytes_per_s"), "memory copy bandwidth"))
    if prof.overheads.eager_launch_s is not None:
        cards.append((fmt(prof.overheads.eager_launch_s, "s"), "eager kernel launch"))
    if i.memory_capacity_bytes:
        # decimal GB first, as the plan's memory lines below give it
        cards.append((f"{i.memory_capacity_bytes / 1e9:.4g} GB ({fmt(i.memory_capacity_bytes, 'bytes')})",
                      "memory per device"))
    rows = [("device", f"{i.device_name} ({i.device_type}), {i.devices_per_node} per node x {i.nodes} node(s)"),
            ("source", "DATASHEET PRIOR (not measured)" if prof.is_datasheet else i.source),
            # a datasheet is transcribed and a published profile cites someone else's run: neither was measured here
            ({"measured": "measured", "datasheet": "transcribed"}.get(i.source, i.source),
             f"{i.date or '-'} on {i.host or '-'}" if i.source == "measured" else (i.date or "-")),
            ("command", i.command or "-")]
    rows += [("versions", ", ".join(f"{k} {v}" for k, v in i.versions.items()))] if i.versions else []
    rows += [("cites", c) for c in i.citations]
    card_html = "".join(f"<div class='card'><b>{_e(v)}</b><span>{_e(k)}</span></div>" for v, k in cards)
    table = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    warn = (f"<div class='warn'>{_e(datasheet_note(i.name, False, unless='accelcal plan --assume-zero-latency'))}"
            f"</div>" if prof.is_datasheet else "")
    from accelcal.calibrate.compose import SMOKE_NOTE, smoke_sweep

    if smoke_sweep(prof):  # as accelcal show warns: the figures below come from a seconds-long test sweep
        warn += f"<div class='warn'>WARNING {_e(SMOKE_NOTE)}</div>"
    return f"<h2>Summary</h2>{warn}<div class='cards'>{card_html}</div><table>{table}</table>"


def _fit_quality(prof) -> str:
    from accelcal.calibrate.show import fitted_quantities

    entries: list[tuple[str, Any]] = fitted_quantities(prof)
    rows, n_flag = [], 0
    for name, q in entries:
        if q is None:
            rows.append(f"<tr><td>{_e(name)}</td><td colspan=5>no fit (datasheet figure)</td></tr>")
            continue
        n_flag += bool(q.flags)
        flags = "<br>".join(f"<span class='flag'>{_e(f)}</span>" for f in q.flags) or "<span class='ok'>ok</span>"
        rows.append(f"<tr><td>{_e(name)}</td><td class='num'>{q.points}</td>"
                    f"<td class='num'>{q.median_rel_err:.1%}</td><td class='num'>{q.heldout_median_rel_err:.1%}</td>"
                    f"<td class='num'>{q.heldout_p90_rel_err:.1%}</td><td>{flags}</td></tr>")
    head = ("<tr><th>fitted quantity</th><th>points</th><th>fit median |err|</th><th>held-out median</th>"
            "<th>held-out p90</th><th>flags</th></tr>")
    n_fit = sum(q is not None for _, q in entries)
    return (f"<h2>Fit quality</h2><p class='sub'>{n_flag} of {n_fit} fits flagged"
            + (f" ({len(entries) - n_fit} datasheet figure(s), no fit)" if len(entries) > n_fit else "") + ". Held-out = "
            f"error on points left out of the fit (how well the profile predicts shapes it did not see).</p>"
            f"<table>{head}{''.join(rows)}</table>")


def _validation(prof) -> str:
    v = prof.validation
    if v is None:
        return ("<h2>Validation</h2><p>No validation section: run <code>accelcal validate --profile "
                "PROFILE --write</code> to time real decoder layers against the planner.</p>")
    rows = "".join(f"<tr><td>{_e(c.name)}</td><td>{_e(c.phase)}</td><td class='num'>{_e(fmt(c.measured_s, 's'))}</td>"
                   f"<td class='num'>{_e(fmt(c.predicted_s, 's'))}</td>"
                   f"<td class='num {'flag' if abs(c.rel_err) > 0.25 else ''}'>{c.rel_err:+.1%}</td></tr>"
                   for c in v.cases)
    return (f"<h2>Validation</h2><p class='sub'>{_e(v.date)} on {_e(v.device)}: median |error| "
            f"{v.median_abs_rel_err:.1%}, max {v.max_abs_rel_err:.1%} over {len(v.cases)} real decoder-layer cases "
            f"(error = predicted / measured - 1; red beyond 25%).</p><table><tr><th>case</th><th>phase</th>"
            f"<th>measured</th><th>predicted</th><th>error</th></tr>{rows}</table>")


def _plan_section(result, why_not: str, args, pareto_png: Path | None) -> str:
    if result is None:
        return f"<h2>Plan</h2><div class='warn'>{_e(why_not)}</div>"
    g = result.groups[0]
    w = result.workload
    pareto = {id(c) for c in g.pareto}
    rows = "".join(
        f"<tr><td>{i}{' *' if id(c) in pareto else ''}</td><td>{_e(c.label)}</td>"
        f"<td class='num'>{_e(fmt(c.ttft_s, 's'))}</td><td class='num'>{_e(fmt(c.tpot_s, 's'))}</td>"
        f"<td class='num'>{c.tokens_per_s_per_device:.4g}</td>"
        f"<td class='num'>{c.memory.total_bytes / 1e9:.4g} GB</td>"  # the unit of the plan's why-lines
        f"<td>{'ok' if not c.misses else '<span class=flag>MISS</span>'}</td></tr>"
        for i, c in enumerate(g.ranked[:args.top], 1))
    best = g.ranked[0]
    why = "".join(f"<li>{_e(x)}</li>" for x in best.why + [f"misses: {m}" for m in best.misses])
    notes = "".join(f"<div class='warn'>{_e(n)}</div>" for n in g.notes)
    img = _img(pareto_png, "every feasible layout; the Pareto front of request latency vs tokens/s per device "
                           "joined; the star is the recommendation") if pareto_png else ""
    return (f"<h2>Plan: {_e(result.model.name)} ({_e(result.model.weight_dtype)})</h2>"
            f"<p class='sub'>{g.devices} x {_e(g.device_name)}; prompt {w.prompt_len}, output {w.output_len}, "
            f"batch {w.batch} per replica; {g.candidates_evaluated} layouts evaluated, {len(g.ranked)} feasible; "
            f"objective {_e(g.objective)}.</p>{notes}"
            f"<p><b>{'Recommended' if best.meets_targets else 'No layout meets the targets; closest'}: "
            f"{_e(best.label)}</b>: TTFT {_e(fmt(best.ttft_s, 's'))}, TPOT "
            f"{_e(fmt(best.tpot_s, 's'))}, {best.tokens_per_s_per_device:.4g} tokens/s per device.</p>"
            f"<ul class='why'>{why}</ul><table><tr><th>#</th><th>layout</th><th>TTFT</th><th>TPOT</th>"
            f"<th>tokens/s/device</th><th>memory/device</th><th>targets</th></tr>{rows}</table>"
            f"<p class='sub'>* on the Pareto front</p>{img}")


_CAPTIONS = {
    "roofline": "GEMM roofline: achieved TFLOP/s vs arithmetic intensity (dots measured, lines the fitted roofs)",
    "memory_bandwidth": "memory bandwidth vs bytes per call in GB/s (dots measured, lines fitted; dotted: the datasheet figure, where a prior exists)",
    "collectives_busbw": "collective bus bandwidth vs message size in GB/s, nccl-tests busbw convention",
}


def build_report(prof, profile_path: str, args: argparse.Namespace, datasheet=None,
                 inter_node=None) -> tuple[str, int, str]:
    """(the HTML page, accelcal plan's exit code for its plan, why the plan failed or missed, else "") : plots are
    rendered in a temporary folder and inlined."""
    from accelcal.calibrate.plot import plot_pareto, plot_profile
    from accelcal.calibrate.priors import find_datasheet

    ds = datasheet if datasheet is not None else find_datasheet(prof)
    result, why_not = _plan(prof, args, inter_node)
    with tempfile.TemporaryDirectory(prefix="accelcal-report-") as tmp:
        notes: list[str] = []
        pngs = plot_profile(prof, tmp, profile_path=profile_path, datasheet=ds, notes=notes)
        pareto = plot_pareto(result, Path(tmp) / "pareto.png") if result is not None else None
        figs, gemm = [], []
        for path in pngs:
            stem = path.stem
            if stem.startswith("gemm_efficiency_"):
                # Small multiples: one per dtype, two to a row.
                gemm.append(_img(path, f"{stem.split('_', 2)[2]}: achieved / best measured FLOP/s vs M, one series "
                                       f"per (N, K) weight shape (dots measured, lines fitted)"))
            else:
                figs.append(_img(path, _CAPTIONS.get(stem, stem)))
        grid = f"<h3>GEMM efficiency per dtype</h3><div class='grid'>{''.join(gemm)}</div>" if gemm else ""
        not_drawn = "".join(f"<li>{_e(n)}</li>" for n in notes)
        plots = (f"<h2>Measurements</h2>{figs[0] if figs else ''}{grid}{''.join(figs[1:])}"
                 + (f"<p class='sub'>Not drawn:</p><ul class='why'>{not_drawn}</ul>" if notes else ""))
        plan_html = _plan_section(result, why_not, args, pareto)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    ref = f"; reference lines from {_e(ds.identity.name)}" if ds is not None else ""
    if result is None:
        rc, why = EXIT_INFEASIBLE, f"no feasible plan: {why_not} (the page says so)"
    elif not all(g.ranked[0].meets_targets for g in result.groups if g.ranked):
        rc, why = EXIT_TARGETS_MISSED, "no plan meets the targets (the page lists the closest)"
    else:
        rc, why = EXIT_OK, ""
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>accelcal report: {_e(prof.identity.name)}</title><style>{_CSS}</style></head><body>"
            f"<h1>accelcal report: {_e(prof.identity.name)}</h1>"
            f"<p class='sub'>profile {_e(profile_path)}; generated {stamp}{ref}</p>"
            + _summary(prof) + _fit_quality(prof) + plots + _validation(prof) + plan_html + "</body></html>\n",
            rc, why)
