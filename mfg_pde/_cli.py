"""The command line: ``python -m mfg_pde solve`` and ``python -m mfg_pde info``.

Exit status: 0 success; 1 the solve finished without converging (the result and figure
are still written); 2 bad options (argparse's convention), with a message saying which
option and what is accepted.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
from collections.abc import Sequence
from importlib import import_module
from pathlib import Path
from typing import Any

from mfg_pde._solve import METHODS
from mfg_pde._version import __version__
from mfg_pde.backends import _REGISTRY as BACKENDS
from mfg_pde.backends import AUTO_ORDER, ENV_VAR, BackendNotAvailableError
from mfg_pde.problems import EXAMPLES

FORMATS = ("npz", "h5")

#: Environment variables that set thread pools, reported by ``info``.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMBA_NUM_THREADS",
)

_DESCRIPTION = """\
Solve Mean Field Games from the command line.

  python -m mfg_pde solve                      # the quickstart example, auto-selected backend
  python -m mfg_pde solve --example hello --backend numpy --Nx 201 --Nt 100
  python -m mfg_pde solve --example crowd_2d --Nx 32 --Nt 20   # 2D: 32 x 32 points
  python -m mfg_pde solve --method particle --num-particles 20000 --output results
  python -m mfg_pde info                       # backends, devices, versions, threads
"""


def _positive_int(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _damping(text: str) -> float:
    value = _positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m mfg_pde``."""
    parser = argparse.ArgumentParser(
        prog="python -m mfg_pde",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mfg_pde {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="{solve,info}", required=True)

    solve = commands.add_parser(
        "solve",
        help="solve a built-in example; print a summary, write the figure and the result",
        description="Solve a built-in example problem. Prints a summary (backend, device, "
        "iterations, residuals, time) and writes OUTPUT/<example>_<method>.png and the "
        "saved result OUTPUT/<example>_<method>.npz (or .h5). Exit status 1 if the "
        "fixed point did not converge.",
    )
    solve.add_argument(
        "--example",
        choices=sorted(EXAMPLES),
        default="quickstart",
        help="quickstart: the DESIGN example (crowd-averse agents heading for x = 0.8); "
        "hello: agents who like company gather at x = 0.5; hello_2d: the same on the unit "
        "square; crowd_2d: a crowd leaving a room through an exit at (1, 0.5) "
        "(default: %(default)s)",
    )
    solve.add_argument(
        "--backend",
        choices=list(BACKENDS),
        default=None,
        help=f"array library (default: automatic, {' > '.join(AUTO_ORDER)}, or ${ENV_VAR})",
    )
    solve.add_argument(
        "--method",
        choices=METHODS,
        default="fdm",
        help="fdm or particle (the FP solver of the fixed point), newton, or auto "
        "(Picard, then safeguarded Anderson, then Newton) (default: fdm)",
    )
    solve.add_argument(
        "--Nx",
        type=_positive_int(3),
        help="grid points, per axis in 2D (default: the example's; 101 in 1D, "
        "128 for hello_2d, 48 for crowd_2d)",
    )
    solve.add_argument(
        "--Nt",
        type=_positive_int(1),
        help="time steps (default: the example's; 50 in 1D, 100 for hello_2d, 40 for crowd_2d)",
    )
    solve.add_argument(
        "--num-particles",
        type=_positive_int(10),
        help="particles, with --method particle (default: 10000)",
    )
    solve.add_argument(
        "--seed", type=_positive_int(0), help="random seed, with --method particle (default: 0)"
    )
    solve.add_argument(
        "--max-iterations",
        type=_positive_int(1),
        default=200,
        help="fixed-point iteration cap (default: %(default)s)",
    )
    solve.add_argument(
        "--tolerance",
        type=_positive_float,
        default=1e-6,
        help="stop when both relative residuals are below this (default: %(default)g)",
    )
    solve.add_argument(
        "--thetaUM", type=_damping, default=0.5, help="damping in (0, 1] (default: %(default)s)"
    )
    solve.add_argument("--anderson", action="store_true", help="Anderson-accelerate the iteration")
    solve.add_argument(
        "--output",
        type=Path,
        default=Path("output"),
        help="folder for the figure and the result (default: %(default)s)",
    )
    solve.add_argument(
        "--format", choices=FORMATS, default="npz", help="result file format (default: npz)"
    )
    solve.add_argument("--no-plot", action="store_true", help="do not draw the figure")
    solve.add_argument(
        "-v", "--verbose", action="store_true", help="progress bar and backend selection log"
    )
    solve.set_defaults(run=_solve, parser=solve)

    info = commands.add_parser(
        "info",
        help="list backends (installed or not), devices, versions and thread settings",
        description="List the backends mfg_pde knows, whether each is installed (and the pip "
        "extra that installs it if not), their versions and devices, which one is "
        "auto-selected, and the thread settings.",
    )
    info.set_defaults(run=_info, parser=info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    args = build_parser().parse_args(argv)
    return args.run(args.parser, args)


def _solve(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from mfg_pde._solve import solve_mfg
    from mfg_pde.backends import create_backend

    if args.method != "particle":
        for flag, value in (("--num-particles", args.num_particles), ("--seed", args.seed)):
            if value is not None:
                parser.error(f"{flag} applies to --method particle only")
    if args.format == "h5":
        try:
            import h5py  # noqa: F401
        except ImportError:
            parser.error("--format h5 needs h5py: pip install h5py (or use --format npz)")
    if args.verbose:
        logging.basicConfig(format="%(name)s: %(message)s")
        logging.getLogger("mfg_pde").setLevel(logging.INFO)

    sizes = {k: v for k, v in (("Nx", args.Nx), ("Nt", args.Nt)) if v is not None}
    try:
        problem = EXAMPLES[args.example](**sizes)
        backend = create_backend(args.backend)
    except (ValueError, BackendNotAvailableError) as err:
        parser.error(str(err))
    options: dict[str, Any] = {
        "max_iterations": args.max_iterations,
        "tolerance": args.tolerance,
        "thetaUM": args.thetaUM,
        "use_anderson": args.anderson,
        "verbose": args.verbose,
    }
    if args.method == "newton":  # its tolerance is on the equations; no damping
        options = {k: options[k] for k in ("max_iterations", "tolerance", "verbose")}
    elif args.method == "auto":
        options.pop("use_anderson")
    if args.method == "particle":
        options.update(
            {
                k: v
                for k, v in (("num_particles", args.num_particles), ("seed", args.seed))
                if v is not None
            }
        )
    result = solve_mfg(problem, method=args.method, backend=backend, **options)

    print(f"example    {args.example} ({args.method})")
    print(result.summary())
    stem = args.output / f"{args.example}_{args.method}"
    if not args.no_plot:
        result.plot(stem.with_suffix(".png"))
        print(f"figure     {stem.with_suffix('.png')}")
    saved = result.save(stem.with_suffix("." + args.format))
    print(f"result     {saved}  (load it with mfg_pde.load)")
    if not result.converged:
        print(f"mfg_pde: did not converge: {result.reason}", file=sys.stderr)
        return 1
    return 0


def _info(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from mfg_pde.backends import available_backends, create_backend

    print(f"mfg_pde {__version__}")
    print(
        f"Python {platform.python_version()} on {platform.platform()}, "
        f"{os.cpu_count()} CPUs ({platform.machine()})"
    )
    libraries = ["numpy", "scipy", "matplotlib", "tqdm"]
    print("libraries  " + ", ".join(f"{name} {_version(name)}" for name in libraries))
    h5py = _version("h5py") or 'not installed; .h5 results need pip install "mfg_pde[hdf5]"'
    print(f"           h5py {h5py}")

    print("\nbackends")
    backends = available_backends()
    for name, entry in backends.items():
        if entry["installed"]:
            state = f"{entry['version']:<16} devices: {', '.join(entry['devices'])}"
        elif "error" in entry:
            state = f"broken: {entry['error']}"
        else:
            state = f'not installed: pip install "mfg_pde[{entry["extra"]}]"'
        if entry.get("registered"):
            state += "  (registered)"
        print(f"  {name:<6} {state}")
    if backends["torch"]["installed"]:
        import torch

        mps = getattr(torch.backends, "mps", None)
        print(
            f"  torch  cuda available: {torch.cuda.is_available()} "
            f"({torch.cuda.device_count()} devices), "
            f"mps available: {bool(mps is not None and mps.is_available())}"
        )

    print("\nthreads")
    for variable in THREAD_VARIABLES:
        print(f"  ${variable} = {os.environ.get(variable, '(unset)')}")
    if backends["torch"]["installed"]:
        import torch

        print(
            f"  torch: {torch.get_num_threads()} intra-op threads in this process; "
            "mfg_pde's torch backend sets 1 on the CPU (TorchBackend(num_threads=...))"
        )
    if backends["numba"]["installed"]:
        import numba

        print(
            f"  numba: {numba.config.NUMBA_NUM_THREADS} threads, "
            f"threading layer {numba.config.THREADING_LAYER!r}"
        )

    order = " > ".join(AUTO_ORDER)
    override = os.environ.get(ENV_VAR, "").strip()
    how = f"${ENV_VAR}={override}" if override else f"automatic, {order}"
    try:
        chosen = create_backend(None)
        print(f"\nselected   {chosen.name} on {chosen.device} ({how})")
    except (ValueError, BackendNotAvailableError) as err:
        print(f"\nselected   none: {err}")
        return 1
    return 0


def _version(module: str) -> str | None:
    try:
        return str(getattr(import_module(module), "__version__", "unknown"))
    except ImportError:
        return None
