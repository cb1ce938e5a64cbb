"""Exit codes every ``accelcal`` command uses, and the ``--help`` text that documents them.

    from accelcal.exitcodes import EXIT_INFEASIBLE
    return EXIT_INFEASIBLE          # accelcal plan: no layout fits

Scripts can branch on them: ``accelcal plan ... ; case $? in 3) ...;; 4) ...;; esac``.
"""

from __future__ import annotations

__all__ = ["EXIT_OK", "EXIT_FAILED", "EXIT_BAD_INPUT", "EXIT_INFEASIBLE", "EXIT_TARGETS_MISSED", "EXIT_REGRESSION",
           "EXIT_CODES", "epilog"]

EXIT_OK = 0
"""The command did what was asked."""
EXIT_FAILED = 1
"""A run failed while measuring (a rank died, a sweep timed out, cases failed); nothing half-written is left."""
EXIT_BAD_INPUT = 2
"""Bad input: an unknown option, a missing or malformed file, a value out of range, a missing optional extra, an
output path that cannot be written as given (read-only, no permission, a file where a folder goes)."""
EXIT_INFEASIBLE = 3
"""``plan``: no layout fits the cluster (memory, divisibility); ``predict``: the deployment does not fit (weights +
reserves, or one request); the message says which constraint failed first."""
EXIT_TARGETS_MISSED = 4
"""``plan``: layouts fit, but none meets the --ttft/--tpot/--request-rate targets (the closest is still printed)."""
EXIT_REGRESSION = 5
"""``compare --fail-on-regression``: a predicted time got slower beyond measurement noise."""

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "ok",
    EXIT_FAILED: "a measurement run failed (nothing half-written is left)",
    EXIT_BAD_INPUT: "bad input (option, file, value, an output path that cannot be written) or a missing optional extra",
    EXIT_INFEASIBLE: "plan (and report's plan): no feasible layout; predict: the deployment does not fit",
    EXIT_TARGETS_MISSED: "plan (and report's plan): no layout meets the targets",
    EXIT_REGRESSION: "compare --fail-on-regression: a regression beyond noise",
}


def epilog() -> str:
    """The exit-code table and the output convention, for the top-level ``--help``."""
    rows = "\n".join(f"  {code}  {what}" for code, what in EXIT_CODES.items())
    # accelcal.cli.main: a signal unwinds every command (ranks stopped, temporary files removed) and exits 128 + it
    return ("output: show, compare, plan, predict, validate and env take --format table|json (table by default);\n"
            "JSON keys carry their units (_s, _bytes, _bytes_per_s, _flop_per_s).\n\n"
            f"exit codes:\n{rows}\n"
            "  128+N  stopped by signal N (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP): ranks stopped, temporary files "
            "removed")
