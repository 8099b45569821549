"""Exact MFG solutions to verify the schemes against (derivations in the docstrings)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import array_api_compat
import numpy as np
from scipy.integrate import solve_ivp


@dataclass
class LinearQuadratic:
    r"""Linear-quadratic MFG on R (DESIGN.md §4), with c = 1/λ.

    f(x, m, t) = q/2 (x - x_q)^2 + κ/2 (x - mean m(t))^2,  g(x) = c_T/2 (x - x_T)^2,
    m0 = N(μ0, s0). Then u = a(t) x^2/2 + b(t) x + e(t) and m(t) = N(μ(t), s(t)) with

        a' = c a^2 - q - κ,              a(T) = c_T
        b' = c a b + q x_q + κ μ,        b(T) = -c_T x_T
        e' = -ν a + c b^2/2 - q x_q^2/2 - κ μ^2/2,   e(T) = c_T x_T^2 / 2
        μ' = -c (a μ + b),               μ(0) = μ0
        s' = σ^2 - 2 c a s,              s(0) = s0

    (substitute u into -u_t - ν u_xx + c u_x^2/2 = f and match powers of x; the drift
    -c u_x is linear, so Gaussians stay Gaussian). The (b, μ) pair is a linear two-point
    problem, solved by shooting on b(0): b(T) is affine in b(0).
    """

    T: float = 1.0
    sigma: float = 0.4
    control_cost: float = 1.0
    q: float = 1.0
    x_q: float = 0.5
    kappa: float = 1.0
    c_T: float = 1.0
    x_T: float = 0.3
    mu0: float = -0.3
    s0: float = 0.04

    def __post_init__(self) -> None:
        c, nu = 1.0 / self.control_cost, 0.5 * self.sigma**2
        q, kappa = self.q, self.kappa
        tol = {"rtol": 1e-12, "atol": 1e-13, "dense_output": True, "method": "DOP853"}
        a_sol = solve_ivp(
            lambda t, y: [c * y[0] ** 2 - q - kappa], (self.T, 0.0), [self.c_T], **tol
        )
        a = lambda t: a_sol.sol(t)[0]  # noqa: E731

        def forward(t, y):
            b, mu, s = y
            return [
                c * a(t) * b + q * self.x_q + kappa * mu,
                -c * (a(t) * mu + b),
                self.sigma**2 - 2.0 * c * a(t) * s,
            ]

        def end_b(b0):
            return solve_ivp(forward, (0.0, self.T), [b0, self.mu0, self.s0], **tol).y[0, -1]

        b_target = -self.c_T * self.x_T
        f0, f1 = end_b(0.0), end_b(1.0)
        b0 = (b_target - f0) / (f1 - f0)
        fwd = solve_ivp(forward, (0.0, self.T), [b0, self.mu0, self.s0], **tol)

        def backward_e(t, y):
            b, mu, _ = fwd.sol(t)
            return [-nu * a(t) + 0.5 * c * b * b - 0.5 * q * self.x_q**2 - 0.5 * kappa * mu * mu]

        e_sol = solve_ivp(backward_e, (self.T, 0.0), [0.5 * self.c_T * self.x_T**2], **tol)
        self._a, self._fwd, self._e = a, fwd, (lambda t: e_sol.sol(t)[0])

    def running_cost(self, x, m, t):
        dx = x[1] - x[0]
        mean = (x * m).sum() * dx
        return 0.5 * self.q * (x - self.x_q) ** 2 + 0.5 * self.kappa * (x - mean) ** 2

    def terminal_cost(self, x):
        return 0.5 * self.c_T * (x - self.x_T) ** 2

    def initial_density(self, x):
        return np.exp(-0.5 * (x - self.mu0) ** 2 / self.s0)

    def problem(self, Nx: int, Nt: int, xmin: float = -2.5, xmax: float = 2.5):
        """The MFGProblem on [xmin, xmax] (no-flux; the default box is wide enough that
        the walls do not matter) whose exact solution this is, away from the walls."""
        from mfg_pde import MFGProblem

        return MFGProblem(
            xmin=xmin,
            xmax=xmax,
            Nx=Nx,
            Nt=Nt,
            T=self.T,
            sigma=self.sigma,
            control_cost=self.control_cost,
            running_cost=self.running_cost,
            terminal_cost=self.terminal_cost,
            initial_density=self.initial_density,
        )

    def value(self, t, x):
        t = np.asarray(t)[:, None]
        b = np.array([self._fwd.sol(ti)[0] for ti in t[:, 0]])[:, None]
        a = np.array([self._a(ti) for ti in t[:, 0]])[:, None]
        e = np.array([self._e(ti) for ti in t[:, 0]])[:, None]
        return 0.5 * a * x**2 + b * x + e

    def density(self, t, x):
        mu = np.array([self._fwd.sol(ti)[1] for ti in t])[:, None]
        s = np.array([self._fwd.sol(ti)[2] for ti in t])[:, None]
        return np.exp(-0.5 * (x - mu) ** 2 / s) / np.sqrt(2.0 * math.pi * s)


@dataclass
class TravellingWave:
    r"""Exact periodic MFG pair on [0, 1): a density wave moving at speed v.

    m(t, x) = ρ(ξ), ξ = x - v t, ρ(ξ) = 1 + A cos(2πξ). FP holds when the flux
    ν m_x + m u_x / λ equals -v ρ + C; so u_x = λ (P'(ξ) - ν ρ'/ρ) with
    P' = C/ρ - v and C = v √(1 - A²) (P' then has zero mean and P is periodic).
    u = λ (P(ξ) - ν log ρ(ξ)), P(ξ) = C R(ξ) - v ξ with R' = 1/ρ in closed form:
    ∫_0^θ dθ'/(1 + A cos θ') = 2/√(1-A²) arctan(√((1-A)/(1+A)) tan(θ/2)).
    The running cost is f = V(t, x) + κ m with V = -u_t - ν u_xx + u_x^2/(2λ) - κ ρ,
    so the pair (u, m) is exact for every coupling strength κ.
    """

    T: float = 0.5
    sigma: float = 0.4
    control_cost: float = 1.0
    amplitude: float = 0.5
    speed: float = 0.5
    kappa: float = 1.0

    @property
    def nu(self) -> float:
        return 0.5 * self.sigma**2

    def _rho(self, xi):
        return 1.0 + self.amplitude * np.cos(2 * np.pi * xi)

    def _parts(self, t, x):
        """u_x, u_xx and u_t at (t, x) (any broadcastable shapes)."""
        A, v, lam, nu = self.amplitude, self.speed, self.control_cost, self.nu
        xi = x - v * t
        rho = self._rho(xi)
        drho = -2 * np.pi * A * np.sin(2 * np.pi * xi)
        ddrho = -((2 * np.pi) ** 2) * A * np.cos(2 * np.pi * xi)
        C = v * math.sqrt(1 - A * A)
        u_x = lam * (C / rho - v - nu * drho / rho)
        u_xx = lam * (-C * drho / rho**2 - nu * (ddrho / rho - drho**2 / rho**2))
        return u_x, u_xx, -v * u_x

    def value(self, t, x):
        A, v, lam, nu = self.amplitude, self.speed, self.control_cost, self.nu
        t = np.asarray(t, dtype=float)
        xi = np.mod(np.asarray(x) - v * (t[:, None] if t.ndim else t), 1.0)
        theta = 2 * np.pi * xi
        k = math.sqrt((1 - A) / (1 + A))
        # Continuous branch of the antiderivative on [0, 2π).
        half = np.arctan(k * np.tan(theta / 2)) + np.pi * (theta > np.pi)
        R = (2 / math.sqrt(1 - A * A)) * half / (2 * np.pi)
        R = np.where(np.abs(theta - np.pi) < 1e-12, 1 / (2 * math.sqrt(1 - A * A)), R)
        P = v * math.sqrt(1 - A * A) * R - v * xi
        return lam * (P - nu * np.log(self._rho(xi)))

    def density(self, t, x):
        t = np.asarray(t, dtype=float)
        return self._rho(np.asarray(x) - self.speed * (t[:, None] if t.ndim else t))

    def potential(self, t, x):
        u_x, u_xx, u_t = self._parts(t, x)
        return (
            -u_t
            - self.nu * u_xx
            + u_x**2 / (2 * self.control_cost)
            - self.kappa * self._rho(x - self.speed * t)
        )

    def running_cost(self, x, m, t):
        # Evaluated with backend arrays: only arithmetic, cos and sin via the array's own
        # namespace, reached through array_api_compat.
        from array_api_compat import array_namespace

        xp = array_namespace(x)
        A, v, lam, nu = self.amplitude, self.speed, self.control_cost, self.nu
        xi = x - v * t
        rho = 1.0 + A * xp.cos(2 * math.pi * xi)
        drho = -2 * math.pi * A * xp.sin(2 * math.pi * xi)
        ddrho = -((2 * math.pi) ** 2) * A * xp.cos(2 * math.pi * xi)
        C = v * math.sqrt(1 - A * A)
        u_x = lam * (C / rho - v - nu * drho / rho)
        u_xx = lam * (-C * drho / rho**2 - nu * (ddrho / rho - drho**2 / rho**2))
        V = v * u_x - nu * u_xx + u_x**2 / (2 * lam) - self.kappa * rho
        return V + self.kappa * m

    def problem(self, Nx: int, Nt: int):
        """The periodic MFGProblem on [0, 1) whose exact solution this is."""
        from mfg_pde import MFGProblem

        return MFGProblem(
            xmin=0.0,
            xmax=1.0,
            Nx=Nx,
            Nt=Nt,
            T=self.T,
            sigma=self.sigma,
            control_cost=self.control_cost,
            running_cost=self.running_cost,
            terminal_cost=lambda x: self.value(self.T, x),
            initial_density=lambda x: self.density(0.0, x),
            boundary="periodic",
        )


@dataclass
class LinearQuadratic2D:
    r"""The 2D linear-quadratic MFG: the sum of two 1D ones (one per axis).

    With ``f(x, y, m, t) = f_x(x, mean_x m) + f_y(y, mean_y m)`` and
    ``g = g_x(x) + g_y(y)``, ``m0 = m0_x(x) m0_y(y)``, the pair
    ``u = u_x(t, x) + u_y(t, y)``, ``m = m_x(t, x) m_y(t, y)`` solves the 2D system:
    the HJB equation is additive (``Δu = u_x'' + u_y''``, ``|∇u|² = u_x'^2 + u_y'^2``),
    the drift ``-∇u/λ`` has x-part depending on x only and y-part on y only, so the FP
    equation splits into the two 1D ones for the product density, and the means of
    ``m`` along x and y are those of ``m_x`` and ``m_y``. Each 1D part is
    :class:`LinearQuadratic` (same T, σ, λ).
    """

    x_part: LinearQuadratic = field(default_factory=LinearQuadratic)
    y_part: LinearQuadratic = field(
        default_factory=lambda: LinearQuadratic(q=2.0, x_q=-0.2, kappa=0.5, x_T=-0.4, mu0=0.2)
    )

    def running_cost(self, x, y, m, t):
        dx, dy = x[1, 0] - x[0, 0], y[0, 1] - y[0, 0]
        mass = m.sum() * dx * dy
        mean_x = (x * m).sum() * dx * dy / mass
        mean_y = (y * m).sum() * dx * dy / mass
        px, py = self.x_part, self.y_part
        return (
            0.5 * px.q * (x - px.x_q) ** 2
            + 0.5 * px.kappa * (x - mean_x) ** 2
            + 0.5 * py.q * (y - py.x_q) ** 2
            + 0.5 * py.kappa * (y - mean_y) ** 2
        )

    def terminal_cost(self, x, y):
        return self.x_part.terminal_cost(x) + self.y_part.terminal_cost(y)

    def initial_density(self, x, y):
        return self.x_part.initial_density(x) * self.y_part.initial_density(y)

    def problem(self, N: int, Nt: int, box: float = 2.0):
        """The MFGProblem on [-box, box]^2 with N x N points (no-flux)."""
        from mfg_pde import MFGProblem

        p = self.x_part
        return MFGProblem(
            domain=[(-box, box), (-box, box)],
            Nx=(N, N),
            Nt=Nt,
            T=p.T,
            sigma=p.sigma,
            control_cost=p.control_cost,
            running_cost=self.running_cost,
            terminal_cost=self.terminal_cost,
            initial_density=self.initial_density,
        )

    def value(self, t, x, y):
        """Exact u on the levels ``t`` and axes ``x``, ``y``: shape (len(t), len(x), len(y))."""
        return self.x_part.value(t, x)[:, :, None] + self.y_part.value(t, y)[:, None, :]

    def density(self, t, x, y):
        return self.x_part.density(t, x)[:, :, None] * self.y_part.density(t, y)[:, None, :]


@dataclass
class StationaryNeumann2D:
    r"""A stationary MFG on the unit square with no-flux walls, coupled through f.

    ``u(x, y) = A cos(πx) cos(πy)`` (zero normal derivative on the walls) and the Gibbs
    density ``m*(x, y) = exp(-u / (λν)) / Z``: its flux ``-ν∇m* - m*∇u/λ`` vanishes
    everywhere, so ``m*`` is a stationary solution of the FP equation with the optimal
    drift ``-∇u/λ``, with no flux through the walls. With

        f(x, y, m) = -νΔu + |∇u|²/(2λ) + κ (m - m*(x, y)),   Δu = -2π² u,

    ``u`` solves the HJB equation for ``m = m*`` at every time; with ``g = u`` and
    ``m0 = m*`` the pair ``(u, m*)`` is the solution on ``[0, T]``. The callables take
    arrays of any Array-API library (numpy, jax, torch).
    """

    A: float = 0.1
    sigma: float = 0.5
    control_cost: float = 1.0
    kappa: float = 0.5
    T: float = 0.5
    Z: float = field(init=False)

    def __post_init__(self) -> None:
        nodes, weights = np.polynomial.legendre.leggauss(200)
        x = 0.5 * (nodes + 1.0)
        X, Y = np.meshgrid(x, x, indexing="ij")
        w = 0.25 * np.outer(weights, weights)
        self.Z = float(np.sum(w * np.exp(-self.u(X, Y) / (self.control_cost * self.nu))))

    @property
    def nu(self) -> float:
        return 0.5 * self.sigma**2

    def u(self, x, y):
        xp = array_api_compat.array_namespace(x)
        return self.A * xp.cos(math.pi * x) * xp.cos(math.pi * y)

    def m(self, x, y):
        xp = array_api_compat.array_namespace(x)
        return xp.exp(-self.u(x, y) / (self.control_cost * self.nu)) / self.Z

    def running_cost(self, x, y, m, t):
        xp = array_api_compat.array_namespace(x)
        u = self.u(x, y)
        ux = -self.A * math.pi * xp.sin(math.pi * x) * xp.cos(math.pi * y)
        uy = -self.A * math.pi * xp.cos(math.pi * x) * xp.sin(math.pi * y)
        hamiltonian = (ux * ux + uy * uy) / (2.0 * self.control_cost)
        return self.nu * 2.0 * math.pi**2 * u + hamiltonian + self.kappa * (m - self.m(x, y))

    def problem(self, Nt: int = 10):
        from mfg_pde import MFGProblem

        return MFGProblem(
            domain=[(0.0, 1.0), (0.0, 1.0)],
            Nx=(8, 8),  # the grid is not used on the quadtree
            T=self.T,
            Nt=Nt,
            sigma=self.sigma,
            control_cost=self.control_cost,
            running_cost=self.running_cost,
            terminal_cost=self.u,
            initial_density=self.m,
        )
