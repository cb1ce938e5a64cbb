"""The ``accelcal`` command: one console script, one subcommand per job.

    $ accelcal --help
    $ accelcal env
    $ accelcal bench kernels --quick
    $ accelcal calibrate --quick --out profiles/my-node.yaml
    $ accelcal plan --profile profiles/my-node.yaml --model llama3-8b

Each area registers its own subcommands from its ``cli`` module
(``register(subparsers)``).  Those modules import torch only inside their
handlers, so ``accelcal plan`` and ``accelcal show`` run without torch.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys
from typing import Sequence

from accelcal.calibrate.profile.errors import ProfileQueryError

from . import __version__
from .exitcodes import EXIT_BAD_INPUT, EXIT_FAILED, epilog
from .extras import extra_for, missing_extra_message

# (module, what it adds) in help order.
_AREAS: tuple[str, ...] = (
    "accelcal.envcli",
    "accelcal.kernels.cli",
    "accelcal.collectives.cli",
    "accelcal.calibrate.cli",
    "accelcal.calibrate.nccl_import",
    "accelcal.planner.cli",
    "accelcal.planner.serving.cli",
    "accelcal.validate.cli",
    "accelcal.report",
)

_BAD_PATH_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM, errno.EEXIST, errno.EISDIR, errno.ENOTDIR,
                              errno.ENAMETOOLONG})
"""OSError numbers that say the path given cannot be written as given (bad input, exit 2), not that a run failed."""


class _Parser(argparse.ArgumentParser):
    """argparse with a short error: the message and where the options are listed, not the whole usage block
    (predict's is 19 lines, and the one line that matters came last).  Subcommands inherit the class."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\nusage: {self.prog} --help lists every "
                                  f"option\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="accelcal",
        description="Measure an accelerator node, fit a profile, and plan Transformer inference on it.",
        epilog=epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"accelcal {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    bench = sub.add_parser("bench", help="run a microbenchmark suite (kernels, collectives)")
    bench_sub = bench.add_subparsers(dest="suite", metavar="SUITE")
    bench.set_defaults(func=lambda args: (bench.print_help(), 2)[1])
    for name in _AREAS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue  # an area without a CLI yet
        module.register(sub, bench_sub)
    return parser


def _innermost_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub)parser of the command ``args`` was parsed into (``accelcal bench kernels`` -> that parser)."""
    while True:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        name = getattr(args, subs[0].dest, None) if subs else None
        if not name or name not in subs[0].choices:
            return parser
        parser = subs[0].choices[name]


_SAFE_STDOUT = ("show", "plan", "compare", "export")
"""Commands that print strings from profile files: their stdout escapes control characters (accelcal.textsafe)."""


def main(argv: Sequence[str] | None = None) -> int:
    from .guardian import Terminated, install_termination_handler
    from .textsafe import SafeStream, safe

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # the command's own usage, not the top level's: the unknown option belongs to what the user was typing
        _innermost_parser(parser, args).error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    # SIGTERM/SIGHUP unwind like Ctrl-C: every `finally` runs (ranks killed, staging and temp files removed).
    install_termination_handler()
    # the command as typed (accelcal bench kernels, accelcal import nccl-tests): every message names it the same way
    name = " ".join(str(x) for x in (args.command, getattr(args, "suite", None), getattr(args, "source_kind", None))
                    if x)
    stdout = sys.stdout
    if args.command in _SAFE_STDOUT:
        sys.stdout = SafeStream(sys.stdout)
    # what an interrupted run leaves: nothing, or with --keep-partial the partial raw results it named
    cleaned = ("temporary files removed" if not getattr(args, "keep_partial", False)
               else "temporary files removed, the partial raw results kept (--keep-partial)")
    try:
        rc = args.func(args)
        sys.stdout.flush()
    except Terminated as exc:
        print(f"accelcal {name}: terminated by {exc}; ranks stopped, {cleaned}", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        # the same unwinding as SIGTERM's (Terminated is a KeyboardInterrupt): every `finally` has run
        print(f"accelcal {name}: interrupted; ranks stopped, {cleaned}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `accelcal plan ... | head -1`: the reader left; say nothing, and keep Python's exit flush quiet.
        _silence_stdout()
        return 141
    except ModuleNotFoundError as exc:
        if extra_for(exc) is None:
            raise
        # The base install lacks an optional extra this command needs: say which, no traceback.
        print(missing_extra_message(exc, name), file=sys.stderr)
        return EXIT_BAD_INPUT
    except (ValueError, FileNotFoundError, ProfileQueryError) as exc:
        # Input errors and a profile that lacks a measurement the command needs: one clear line, no traceback.
        # Any other exception (a KeyError included) is a bug and keeps its traceback.  Control characters
        # from a file named in the message are escaped.
        print(f"accelcal {name}: error: {safe(exc, keep_newlines=False)[:2000]}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        # Disk full, read-only folder, permission: one line naming the path.  A path that cannot be written as given
        # (read-only, no permission, a file where a folder goes or the reverse) is bad input, as check_dir's and
        # check_file's refusals before a run are; a disk that fills or fails during one is a failed run.
        from .preflight import os_error_line

        print(f"accelcal {name}: error: {safe(os_error_line(exc))}", file=sys.stderr)
        return EXIT_BAD_INPUT if exc.errno in _BAD_PATH_ERRNOS else EXIT_FAILED
    finally:
        sys.stdout = stdout
    return int(rc or 0)


def _silence_stdout() -> None:
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
