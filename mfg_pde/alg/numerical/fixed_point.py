"""Fixed-point (Picard) iteration between the HJB and FP solvers, damped or Anderson-mixed."""

from __future__ import annotations

import math
import time
import warnings
from typing import Any

import numpy as np

from mfg_pde._problem import MFGProblem
from mfg_pde._result import MFGResult
from mfg_pde.alg.numerical._base import (
    check_solve_arguments,
    compiled_program,
    initial_iterate,
)
from mfg_pde.alg.numerical._fixed_point_iteration import (
    NONFINITE_M,
    NONFINITE_U,
    RUNNING,
    IterationState,
    default_initial,
    initial_state,
    make_iteration,
)
from mfg_pde.alg.numerical._fixed_point_result import fixed_point_result
from mfg_pde.alg.numerical._residual import make_equation_residual
from mfg_pde.alg.numerical.fp_fdm import FPFDMSolver
from mfg_pde.alg.numerical.fp_particle import FPParticleSolver
from mfg_pde.alg.numerical.hjb_fdm import HJBFDMSolver
from mfg_pde.backends import BaseBackend, create_backend
from mfg_pde.utils.progress import Callback, Progress


class FixedPointIterator:
    r"""Solve the MFG system by iterating ``M -> U = HJB(M) -> M = FP(U)``.

    One iteration maps ``(U_k, M_k)`` to ``(Û, M̂) = (HJB(M_k), FP(HJB(M_k)))`` and then

    * damped Picard: ``U_{k+1} = θ Û + (1 - θ) U_k`` and likewise M (θ = ``thetaUM``);
    * Anderson (``use_anderson=True``): Anderson mixing with memory ``anderson_depth`` and
      mixing ``θ`` on the stacked vector ``(U, M)``. With a particle FP solver, whose
      density is noisy, Anderson is applied to U only and M is damped (Anderson
      extrapolates noise into large, even negative, densities otherwise); a warning
      says so.

    The iteration stops when the relative L2 change of the undamped map,
    ``||Û - U_k|| / ||Û||`` and ``||M̂ - M_k|| / ||M̂||``, is below ``tolerance`` for both
    (and, when ``equation_tolerance`` is given to :meth:`solve`, the discrete equations
    hold for ``(Û, M̂)`` to that tolerance: ``result.residuals["hjb"]``, ``["fp"]``);
    if a solver produces NaN or inf it stops at once and the result says where. The HJB
    Newton iterations start from ``U_k``.

    Safeguards for hard problems (small diffusion, strong coupling), all off by default:

    * ``adaptive_damping=True``: θ becomes part of the iteration state. It is
      multiplied by 1.1 whenever the fixed-point residual ``sqrt(r_U² + r_M²)`` reaches
      a new low, and halved when the residual grows to 1.5 times that low or makes no
      new low for 5 iterations (a cycle, the usual failure of Picard on hard problems);
      it stays in ``[1e-3, thetaUM]`` (:data:`DAMPING_SHRINK`, :data:`DAMPING_GROW`,
      :data:`DAMPING_GROWTH`, :data:`DAMPING_PATIENCE`, :data:`DAMPING_MIN` in
      :mod:`~mfg_pde.alg.numerical._fixed_point_iteration`). With
      Anderson it adapts the mixing parameter the same way.
    * ``anderson_safeguard=ρ``: the Anderson history is cleared when the residual grows
      by more than the factor ρ (> 1) in one step, and the step taken then is the damped
      one (a fall-back to damping until the history rebuilds); ``anderson_restart=n``
      clears it every n steps; ``anderson_mixing`` sets the mixing parameter (default
      ``thetaUM``).
    * ``stall_window=w``: stop early, with ``converged=False`` and a reason that says
      so, when from iteration ``2 w`` on the contraction rate of the residual over the
      last ``w`` iterations predicts that the tolerances cannot be met within
      ``max_iterations``; a cycling iteration makes no new low and predicts never
      (:mod:`~mfg_pde.alg.numerical._stall`). ``solve_mfg(method="auto")`` uses it
      (w = 5) to hand over to Newton early instead of spending the whole budget.

    All of them are written into the one iteration function, so they run unchanged in
    the compiled ``lax.while_loop`` on jax and in the host loop elsewhere.

    How it runs (``compile=True``, the default):

    * jax with finite-difference HJB and FP: the whole solve is one compiled program, a
      ``lax.while_loop`` over iterations with fixed-shape state (the residual histories
      are arrays of length ``max_iterations``, the Anderson history a ring buffer) around
      the two ``lax.scan`` time marches. It is compiled once per problem structure (grid
      sizes, boundary, running-cost callable, options); σ, λ, the domain, g, m0 and
      ``cost_parameters`` are arguments, so changing them does not recompile.
      ``result.timings["compile"]`` is the compile time (0 when reused). If compilation
      fails (a running cost that cannot be traced), a warning is issued and the solve
      runs eagerly.
    * elsewhere: a Python loop over iterations around the solvers' marches, with one
      host synchronisation per iteration (the status flag); torch marches themselves
      never synchronise.

    ``compile=False`` runs everything op by op (Python loops even on jax): the reference
    the compiled program is tested against.

    Parameters
    ----------
    problem : MFGProblem
    hjb_solver, fp_solver :
        Solver instances (e.g. :class:`HJBFDMSolver`, :class:`FPFDMSolver`).
    backend : str, BaseBackend or None
        Given: both child solvers are moved to it. None: the children's backend (they
        must agree).
    thetaUM : float in (0, 1]
        Damping of the Picard update (Anderson's mixing parameter unless
        ``anderson_mixing`` is given); with ``adaptive_damping`` the largest θ used.
    use_anderson : bool
    anderson_depth : int
    compile : bool
    adaptive_damping : bool
        Shrink θ when the residual grows, grow it back when it falls (see above).
    anderson_mixing : float in (0, 1] or None
        Anderson's mixing parameter β (None: ``thetaUM``).
    anderson_safeguard : float > 1 or None
        Clear the Anderson history when the residual grows by more than this factor.
    anderson_restart : int or None
        Clear the Anderson history every this many iterations.
    stall_window : int >= 1 or None
        Stop when the iteration has stalled, judged over this many iterations (above);
        None (default): run until converged or ``max_iterations``.
    """

    def __init__(
        self,
        problem: MFGProblem,
        hjb_solver: Any,
        fp_solver: Any,
        backend: str | BaseBackend | None = None,
        thetaUM: float = 0.5,
        use_anderson: bool = False,
        anderson_depth: int = 5,
        compile: bool = True,
        adaptive_damping: bool = False,
        anderson_mixing: float | None = None,
        anderson_safeguard: float | None = None,
        anderson_restart: int | None = None,
        stall_window: int | None = None,
    ) -> None:
        if not isinstance(problem, MFGProblem):
            raise TypeError(f"problem must be an MFGProblem, got {type(problem).__name__}")
        for label, solver in (("hjb_solver", hjb_solver), ("fp_solver", fp_solver)):
            if not hasattr(solver, "solve_backend"):
                raise TypeError(f"{label} must be an mfg_pde solver, got {type(solver).__name__}")
            if solver.problem is not problem:
                raise ValueError(f"{label} was built for a different MFGProblem")
        if not (isinstance(thetaUM, (int, float)) and 0 < thetaUM <= 1):
            raise ValueError(f"thetaUM must be in (0, 1], got thetaUM={thetaUM!r}")
        if isinstance(anderson_depth, bool) or not isinstance(anderson_depth, int):
            raise TypeError(f"anderson_depth must be an int, got {anderson_depth!r}")
        if anderson_depth < 1:
            raise ValueError(f"anderson_depth must be >= 1, got {anderson_depth}")
        if not isinstance(compile, bool):
            raise TypeError(f"compile must be True or False, got {compile!r}")
        if not isinstance(adaptive_damping, bool):
            raise TypeError(f"adaptive_damping must be True or False, got {adaptive_damping!r}")
        if anderson_mixing is not None and not (
            isinstance(anderson_mixing, (int, float)) and 0 < anderson_mixing <= 1
        ):
            raise ValueError(f"anderson_mixing must be in (0, 1] or None, got {anderson_mixing!r}")
        if anderson_safeguard is not None and not (
            isinstance(anderson_safeguard, (int, float)) and anderson_safeguard > 1
        ):
            raise ValueError(
                f"anderson_safeguard must be a number > 1 or None, got {anderson_safeguard!r}"
            )
        if anderson_restart is not None and (
            isinstance(anderson_restart, bool)
            or not isinstance(anderson_restart, int)
            or anderson_restart < 1
        ):
            raise ValueError(
                f"anderson_restart must be an int >= 1 or None, got {anderson_restart!r}"
            )
        if stall_window is not None and (
            isinstance(stall_window, bool) or not isinstance(stall_window, int) or stall_window < 1
        ):
            raise ValueError(f"stall_window must be an int >= 1 or None, got {stall_window!r}")
        self.problem = problem
        self.hjb_solver = hjb_solver
        self.fp_solver = fp_solver
        if backend is None:
            if type(hjb_solver.backend) is not type(fp_solver.backend) or (
                hjb_solver.backend.device != fp_solver.backend.device
            ):
                raise ValueError(
                    f"hjb_solver runs on {hjb_solver.backend.name} ({hjb_solver.backend.device}) "
                    f"but fp_solver on {fp_solver.backend.name} ({fp_solver.backend.device}); "
                    "pass backend= to move both"
                )
            self.backend = hjb_solver.backend
        else:
            self.backend = create_backend(backend)
        for solver in (hjb_solver, fp_solver):
            if solver.backend is not self.backend:
                solver.set_backend(self.backend)
        self.thetaUM = float(thetaUM)
        self.use_anderson = bool(use_anderson)
        self.anderson_depth = anderson_depth
        self.anderson_on_u_only = self.use_anderson and isinstance(fp_solver, FPParticleSolver)
        self.compile = compile
        self.adaptive_damping = adaptive_damping
        self.anderson_mixing = None if anderson_mixing is None else float(anderson_mixing)
        self.anderson_safeguard = None if anderson_safeguard is None else float(anderson_safeguard)
        self.anderson_restart = anderson_restart
        self.stall_window = stall_window

    @property
    def method(self) -> str:
        """``"anderson"`` or ``"picard"`` (damped), as the result reports it."""
        return "anderson" if self.use_anderson else "picard"

    def _options_key(self) -> tuple:
        """The options a compiled program depends on."""
        return (
            self.thetaUM,
            self.use_anderson,
            self.anderson_depth,
            self.adaptive_damping,
            self.anderson_mixing,
            self.anderson_safeguard,
            self.anderson_restart,
            self.stall_window,
        )

    @property
    def name(self) -> str:
        return f"FixedPointIterator[{self.backend.name}]"

    @property
    def runs_as_one_program(self) -> bool:
        """Whether :meth:`solve` runs as one compiled program (jax, compile=True, FDM
        HJB with FDM FP or with particles whose march compiles into it, see
        :attr:`FPParticleSolver.compiles_in_program`; a solve with ``verbose`` or a
        ``callback`` runs the host loop instead)."""
        fp = self.fp_solver
        return (
            self.compile
            and self.backend.has_capability("kernel_fusion")
            and type(self.hjb_solver) is HJBFDMSolver
            and (
                type(fp) is FPFDMSolver or (type(fp) is FPParticleSolver and fp.compiles_in_program)
            )
        )

    def program_arrays(self) -> dict[str, Any]:
        """The arguments of :meth:`program`'s function: the problem's values
        (:meth:`HJBFDMSolver.problem_arrays`) and, with particles, their draws
        (:meth:`FPParticleSolver.program_arrays`)."""
        arrays = self.hjb_solver.problem_arrays()
        if isinstance(self.fp_solver, FPParticleSolver):
            arrays.update(self.fp_solver.program_arrays())
        return arrays

    def solve(
        self,
        max_iterations: int = 100,
        tolerance: float = 1e-6,
        *,
        equation_tolerance: float | None = None,
        initial: tuple[Any, Any] | None = None,
        verbose: bool = False,
        callback: Callback | None = None,
    ) -> MFGResult:
        """Iterate until both relative changes are below ``tolerance``.

        ``initial``: the starting iterate ``(U, M)``, arrays of shape ``problem.shape``
        (a previous result's, to continue it or to start from a nearby problem's
        answer); ``U[-1]`` and ``M[0]`` are replaced by ``g`` and ``m0``. Default:
        ``U = g`` and ``M = m0`` at every time level.

        ``equation_tolerance``: also require the discrete HJB and FP equations to hold
        for the answer, ``max |F| <= equation_tolerance`` and ``max |G| <=
        equation_tolerance`` (:mod:`~mfg_pde.alg.numerical._residual`). Either way
        ``result.residuals["hjb"]`` and ``["fp"]`` report them every iteration.

        ``verbose=True`` shows a progress bar (tqdm, on stderr) with the residuals;
        ``callback(iteration, {"U": r_U, "M": r_M})`` is called after every iteration
        and stops the solve by returning a true value
        (:class:`~mfg_pde.utils.progress.Progress`). Either one makes the iteration run
        in the host loop (on jax around the compiled marches), since it reports every
        iteration to Python.

        Returns an :class:`~mfg_pde.MFGResult`; ``converged=False`` with the ``reason``
        when the iteration cap is reached, values stop being finite, or the callback
        stopped it.
        """
        tolerances = check_solve_arguments(max_iterations, tolerance, equation_tolerance)
        start_from = None if initial is None else self._checked_initial(initial)
        notes: list[str] = []
        if self.anderson_on_u_only:
            msg = (
                "Anderson acceleration with a particle FP solver amplifies sampling noise; "
                "it is applied to U only and M is damped with thetaUM"
            )
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
            notes.append(msg)

        progress = Progress(max_iterations, verbose, callback, description=self.name)
        start = time.perf_counter()
        timings: dict[str, float] = {}
        state, eager = None, not self.compile
        if self.runs_as_one_program and not (verbose or callback is not None):
            try:
                state, timings["compile"] = self._solve_compiled(
                    max_iterations, tolerances, start_from
                )
            except Exception as err:  # tracing or compilation failed: run op by op
                msg = (
                    f"compiling the fixed-point solve failed ({type(err).__name__}: {err}); "
                    "running it eagerly instead (much slower)"
                )
                warnings.warn(msg, RuntimeWarning, stacklevel=2)
                notes.append(msg)
                eager = True
        stopped = None
        if state is None:
            try:
                state, stopped = self._solve_on_host(
                    max_iterations, tolerances, timings, eager, progress, start_from
                )
            finally:
                progress.close()
        timings["total"] = time.perf_counter() - start
        return fixed_point_result(
            self, state, tolerances, max_iterations, timings, notes, stopped=stopped
        )

    # -- the iteration, written once ----------------------------------------------------
    def _checked_initial(self, initial: Any) -> tuple[Any, Any]:
        """``initial`` as backend arrays with the fixed end levels (see :meth:`solve`)."""
        U, M = initial_iterate(self.problem, self.backend, initial)
        for name, v in (("U", U), ("M", M)):
            if not np.isfinite(v).all():
                raise ValueError(f"initial {name} has non-finite values")
        return self.backend.from_numpy(U), self.backend.from_numpy(M)

    # -- the two ways to run it ---------------------------------------------------------
    def _solve_compiled(
        self, max_iterations: int, tolerances: tuple[float, float], initial: Any = None
    ) -> tuple[IterationState, float]:
        """The whole iteration as one compiled program (jax); returns (state, compile s)."""
        program, compile_seconds = self.program(max_iterations, initial is not None)
        arrays = self.program_arrays()
        if initial is not None:
            arrays["initial"] = initial
        state = program(arrays, *tolerances)
        self.backend.to_numpy(state.k)  # wait for it: jax dispatches asynchronously
        return state, compile_seconds

    def program(self, max_iterations: int, with_initial: bool = False) -> tuple[Any, float]:
        """The compiled ``(arrays, tolerance, equation_tolerance) -> IterationState`` and
        its compile time (``equation_tolerance = inf`` turns that criterion off).
        ``with_initial``: ``arrays["initial"]`` holds the starting ``(U, M)``.

        The program is shared by every iterator with the same structure (see
        :func:`~mfg_pde.alg.numerical._base.compiled_program`): the compile time is 0
        when it was compiled before. ``arrays`` may carry a leading batch axis under
        ``jax.vmap`` (see :func:`mfg_pde.solve_mfg_batch`).
        """
        b, p, hjb, fp = self.backend, self.problem, self.hjb_solver, self.fp_solver
        key = (
            "fixed_point",
            p.grid_shape,
            p.Nt,
            p.boundaries,
            p.running_cost,
            tuple(p.cost_parameters),
            hjb.newton_tolerance,
            hjb.max_newton_iterations,
            *self._options_key(),
            max_iterations,
            with_initial,
        )
        if isinstance(fp, FPParticleSolver):
            key += fp.program_key()
            if p.dim == 2:
                key += (hjb.krylov_tolerance, hjb.max_krylov_iterations)
        elif p.dim == 2:
            key += (
                hjb.krylov_tolerance,
                hjb.max_krylov_iterations,
                fp.krylov_tolerance,
                fp.max_krylov_iterations,
            )

        def build():
            march = hjb.make_march()
            hjb_march = lambda arrays, M, U: march(arrays, M, U)[:2]  # noqa: E731
            residual = make_equation_residual(b, p.running_cost, _periodic(p))
            iteration = make_iteration(
                self, b, hjb_march, fp.make_march(), residual, max_iterations
            )

            def run(arrays: dict, tolerance: Any, equation_tolerance: Any) -> IterationState:
                state = initial_state(self, b, arrays, max_iterations)
                return b.while_loop(
                    lambda s: (s.k < max_iterations) & (s.status == RUNNING),
                    lambda s: iteration(arrays, (tolerance, equation_tolerance), s),
                    state,
                )

            return run

        program, new = compiled_program(b, key, build)
        if not new:
            return program, 0.0
        # Compile now, with a run that stops after one iteration (tolerance inf), so that
        # compiling and solving are timed apart; that iteration's time is in the figure.
        start = time.perf_counter()
        arrays = self.program_arrays()
        if with_initial:  # the default start stands in for the caller's
            arrays["initial"] = default_initial(self, b, arrays)
        b.to_numpy(program(arrays, math.inf, math.inf).k)
        return program, time.perf_counter() - start

    def _solve_on_host(self, max_iterations, tolerances, timings, eager, progress, initial=None):
        """A Python loop over iterations: one host synchronisation (the status, and the
        residuals when ``progress`` reports them) each. Returns ``(state, stop reason)``.

        ``eager``: the marches too run op by op (Python loops, no jit)."""
        b = self.backend
        if eager:
            b = b.eager()
            hjb, fp = _eager_copy(self.hjb_solver, b), _eager_copy(self.fp_solver, b)
        else:
            hjb, fp = self.hjb_solver, self.fp_solver
        timings.update(hjb=0.0, fp=0.0)

        def hjb_march(arrays, M, U_guess):
            t0 = time.perf_counter()
            U = hjb.solve_backend(M, U_guess)
            timings["hjb"] += time.perf_counter() - t0
            return U, hjb._failures

        def fp_march(arrays, U):
            t0 = time.perf_counter()
            M = fp.solve_backend(U)
            timings["fp"] += time.perf_counter() - t0
            return M

        xp = b.xp
        arrays = hjb.problem_arrays()
        p = self.problem
        residual, _ = compiled_program(
            b,
            (
                "residual",
                p.grid_shape,
                p.Nt,
                p.boundaries,
                p.running_cost,
                tuple(p.cost_parameters),
            ),
            lambda: make_equation_residual(b, p.running_cost, _periodic(p)),
        )
        iteration = make_iteration(self, b, hjb_march, fp_march, residual, max_iterations)
        if initial is not None:
            arrays = {**arrays, "initial": initial}
        state = initial_state(self, b, arrays, max_iterations)
        for k in range(max_iterations):
            t0 = time.perf_counter()
            state = iteration(arrays, tolerances, state)
            if k == 0:
                timings["first_iteration"] = time.perf_counter() - t0
            if not progress.active:
                if int(b.to_numpy(state.status)) != RUNNING:
                    break
                continue
            status, ru, rm = b.to_numpy(
                xp.stack([xp.astype(state.status, b.dtype), state.res_u[k], state.res_m[k]])
            )
            if int(status) in (NONFINITE_U, NONFINITE_M):
                break
            # Convergence wins over a stop request in the same iteration.
            if progress.update(k + 1, {"U": float(ru), "M": float(rm)}) and status == RUNNING:
                return state, progress.stop_reason
            if int(status) != RUNNING:
                break
        return state, None


def _eager_copy(solver: Any, backend: BaseBackend) -> Any:
    """A copy of ``solver`` on the eager view of its backend (the original is untouched)."""
    import copy

    clone = copy.copy(solver)
    clone.set_backend(backend)
    return clone


def _periodic(problem: Any) -> Any:
    """The ``periodic`` argument of the marches: a bool in 1D, a pair in 2D."""
    return problem.periodic if problem.dim == 2 else problem.boundary == "periodic"
