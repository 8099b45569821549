"""The binned Gaussian KDE in 1D, planned once and applied many times.

:class:`BinnedKDE` holds everything that depends on the grid and the bandwidth, but not
on the particles: the fine binning grid, the sampled kernel on the backend's device, and
either the kernel's spectrum (FFT convolution) or the reshaped kernel of the banded
product. Applying it to particles costs one linear binning pass over the particles
(``backend.linear_binning``) plus work on the fine grid, with no host round-trip, so a
compiled time march (JAX ``scan``) or a GPU march can call it at every step. Its image
and smoothing steps act on the last axis of a batch of fine-grid rows, which is how the
2D plan (:mod:`mfg_pde.backends._kde_2d`) smooths along its binned axis.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: Kernel support in units of the bandwidth: exp(-KDE_CUTOFF**2 / 2) ~ 1.3e-14, so
#: particles farther than this from every grid point contribute below round-off.
KDE_CUTOFF = 8.0

#: Default bound of the binning error, relative to the kernel's peak value (see
#: :meth:`BaseBackend.gaussian_kde`). 2D is looser (it was set when both axes were
#: binned; the 2D plan now bins one axis only, see :mod:`mfg_pde.backends._kde_2d`).
BINNING_RTOL = {1: 1e-6, 2: 1e-4}

#: Largest fine binning grid (points over all axes) the binned KDE will build.
MAX_BINNING_POINTS = 2**24

#: Images of the particles that the binned plans can add (per axis in 2D).
IMAGES = (None, "reflect", "periodic")

#: Smoothing methods: FFT convolution, or the banded product on the reshaped fine grid.
SMOOTHINGS = ("auto", "fft", "banded")

#: Flops of the banded product that cost as much as one flop of the FFT path, measured
#: on a 2-core EPYC with numpy: a BLAS product of shape (R, r) @ (r, q) runs several
#: times faster per flop than pocketfft's real transforms (see docs/particles.md).
BANDED_FLOP_ADVANTAGE = 4.0


class BinnedKDE:
    """Gaussian KDE on a fixed uniform 1D grid by linear binning plus convolution.

    ``density(x) = sum_k w_k exp(-(x - X_k)^2 / (2 h^2)) / (h sqrt(2 pi))`` on the grid,
    computed as follows. The fine grid contains the output points, has spacing
    ``delta = spacing / r <= h sqrt(8 rtol)`` and extends ``8 h`` past both ends
    (``pad`` points). Particles are binned linearly onto it (each gives its two
    neighbours their shares; the error of one particle is at most ``rtol`` times the
    kernel's peak, see :meth:`BaseBackend.gaussian_kde`), images are added on the fine
    grid, and the binned weights are convolved with the kernel sampled at ``delta`` and
    read at the output points. :meth:`add_images` and :meth:`smooth` act on the last
    axis of an array ``(..., F)``, so a batch of fine rows is smoothed in one call.

    Parameters
    ----------
    backend : BaseBackend
    axes : sequence of one 1D host array
        The output grid (uniform). For 2D grids see
        :class:`~mfg_pde.backends._kde_2d.BinnedKDE2D`.
    bandwidth : sequence of one float
        ``h``.
    binning_rtol : float
    images : {None, "reflect", "periodic"}
        The particles must then lie in the domain. ``"reflect"``: add the mirror images
        of the particles across the first and the last grid point (no-flux walls).
        ``"periodic"``: the grid is one period ``[x_0, x_0 + G spacing)``; add the
        images shifted by plus and minus one period. Because both ends are fine-grid
        points and the period is a whole number of fine cells, an image's binned
        weights are the particles' binned weights reflected or shifted: the images cost
        O(fine grid), not another 2N binned particles, and equal binning the 3N points
        up to round-off.
    smoothing : {"auto", "fft", "banded"}
        How the binned weights are convolved. ``"fft"``: zero-padded real FFTs,
        ``O(F log F)`` for ``F`` fine points. ``"banded"``: the kernel applied at the
        output points only, as one matrix product of the fine grid reshaped to rows of
        ``r`` points with the kernel reshaped to ``q = ceil((2 pad + 1) / r)`` columns,
        ``O(F q)``; ``q ~ 16 h / spacing``, so this wins when the bandwidth is a few
        grid spacings. ``"auto"`` picks by flop count.
    """

    def __init__(
        self,
        backend: Any,
        axes: list[np.ndarray],
        bandwidth: tuple[float, ...],
        binning_rtol: float,
        images: str | None = None,
        smoothing: str = "auto",
    ) -> None:
        if images not in IMAGES:
            raise ValueError(f"images must be one of {IMAGES}, got {images!r}")
        if smoothing not in SMOOTHINGS:
            raise ValueError(f"smoothing must be one of {SMOOTHINGS}, got {smoothing!r}")
        dim = len(axes)
        if dim != 1:
            raise ValueError(f"BinnedKDE is the 1D plan; got {dim} axes (use BinnedKDE2D)")
        self.backend = backend
        self.dim = dim
        self.images = images
        self.out_shape = tuple(int(a.shape[0]) for a in axes)
        self.shape, self.starts, self.deltas, self.refine, self.pads = [], [], [], [], []
        kernels = []
        for a, h in zip(axes, bandwidth, strict=True):
            size, r, pad, delta = fine_grid(a, h, binning_rtol, dim)
            self.shape.append(size)
            self.starts.append(float(a[0]) - pad * delta)
            self.deltas.append(delta)
            self.refine.append(r)
            self.pads.append(pad)
            j = np.arange(-pad, pad + 1) * delta
            kernels.append(np.exp(-0.5 * (j / h) ** 2) / (h * math.sqrt(2.0 * math.pi)))
        if math.prod(self.shape) > MAX_BINNING_POINTS:
            raise ValueError(
                f"the binning grid would have {math.prod(self.shape)} points; raise "
                "binning_rtol or use method='exact'"
            )
        if images == "periodic":
            self.period = self.out_shape[0] * self.refine[0]  # in fine cells
        self.smoothing = self._choose_smoothing(smoothing, kernels)
        if self.smoothing == "banded":
            self._prepare_banded(kernels[0])
        else:
            self._prepare_fft(kernels)

    # -- planning ------------------------------------------------------------------------
    def _choose_smoothing(self, smoothing: str, kernels: list[np.ndarray]) -> str:
        if smoothing != "auto":
            return smoothing
        return "banded" if self.banded_flops() < self.fft_flops() else "fft"

    def fft_flops(self) -> float:
        """Model cost of the FFT convolution: a real forward and inverse transform."""
        n = _fast_fft_size(self.shape[0] + 2 * self.pads[0])
        return 2.0 * 2.5 * n * math.log2(n) + 4.0 * n

    def banded_flops(self) -> float:
        """Model cost of the banded product, in FFT-equivalent flops."""
        r, pad, g = self.refine[0], self.pads[0], self.out_shape[0]
        q = -(-(2 * pad + 1) // r)
        rows = g - 1 + q
        return 2.0 * rows * r * q / BANDED_FLOP_ADVANTAGE + g * q

    def _prepare_fft(self, kernels: list[np.ndarray]) -> None:
        b = self.backend
        self._fft_size = _fast_fft_size(self.shape[0] + len(kernels[0]) - 1)
        spectrum = np.fft.rfft(kernels[0], n=self._fft_size)
        if b.eps > 1e-10:  # a float32 device (torch on mps): match its complex type
            spectrum = spectrum.astype(np.complex64)
        self._spectrum = b.from_numpy(spectrum)

    def _prepare_banded(self, kernel: np.ndarray) -> None:
        b = self.backend
        r, pad, g = self.refine[0], self.pads[0], self.out_shape[0]
        q = -(-(2 * pad + 1) // r)
        self._rows = g - 1 + q
        # out[m] = sum_t fine[m r + t] kernel[t] = sum_j sum_s rows[m + j, s] K[j, s] with
        # rows = fine reshaped (rows, r) and K = kernel reshaped (q, r): the product
        # rows @ K^T is (rows, q) and out[m] sums its entries (m + j, j).
        padded = np.zeros(q * r)
        padded[: kernel.size] = kernel
        self._kernel_columns = b.from_numpy(np.ascontiguousarray(padded.reshape(q, r).T))
        m, j = np.meshgrid(np.arange(g), np.arange(q), indexing="ij")
        self._diagonals = b.from_numpy(((m + j) * q + j).reshape(-1).astype(np.int64))
        self._q = q

    # -- applying ------------------------------------------------------------------------
    def __call__(self, particles: Any, weights: Any | None = None) -> Any:
        """Density ``(G,)`` on the grid of particles ``(N,)`` (or ``(N, 1)``).

        Weights default to ``1/N`` each (then no weight array is formed).
        """
        density = self.smooth(self.add_images(self.bin(particles, weights)))
        if weights is None:  # the convolution is linear: scale G values, not N weights
            density = density * (1.0 / max(int(particles.shape[0]), 1))
        return density

    def bin(self, particles: Any, weights: Any | None = None) -> Any:
        """Linear binning onto the fine grid (unit weights when ``weights`` is None)."""
        pts = particles if particles.ndim == 1 else particles[:, 0]
        return self.backend.linear_binning(
            pts, self.starts[0], self.deltas[0], self.shape[0], weights
        )

    def add_images(self, binned: Any) -> Any:
        """Add the reflected or periodic images (see ``images``) to binned weights.

        ``binned`` is ``(..., F)``: the images act on the last axis.
        """
        if self.images is None:
            return binned
        xp = self.backend.xp
        size, pad = self.shape[0], self.pads[0]
        batch = tuple(binned.shape[:-1])

        def zeros(n: int) -> Any:
            return self.backend.zeros((*batch, n))

        if self.images == "reflect":
            # Fine index pad is the left wall, pad + E the right one (E = (G-1) r): the
            # mirror image of the weight at pad + i lands at pad - i, of pad + E - i at
            # pad + E + i, for i = 0 ... pad.
            end = size - 1 - pad
            left = xp.flip(binned[..., pad : 2 * pad + 1], axis=-1)
            right = xp.flip(binned[..., end - pad : end + 1], axis=-1)
            return (
                binned
                + xp.concat([left, zeros(size - pad - 1)], axis=-1)
                + xp.concat([zeros(end), right], axis=-1)
            )
        period = self.period
        if period >= size:  # the kernel is too narrow to reach across a period
            return binned
        rest = size - period
        return (
            binned
            + xp.concat([binned[..., period:], zeros(period)], axis=-1)  # images at x - L
            + xp.concat([zeros(period), binned[..., :rest]], axis=-1)  # images at x + L
        )

    def add_images_in_place(self, binned: np.ndarray) -> None:
        """:meth:`add_images` on a host NumPy array, in place: only the ``2 (pad + 1)``
        fine points of each row that receive an image are written, instead of the three
        full-size copies of the array version (the images are read before any is added,
        so they are those of the original weights, as there)."""
        if self.images is None:
            return
        size, pad = self.shape[0], self.pads[0]
        if self.images == "reflect":
            end = size - 1 - pad
            left = binned[..., 2 * pad : pad - 1 if pad else None : -1].copy()
            right = binned[..., end : end - pad - 1 if end > pad else None : -1].copy()
            binned[..., : pad + 1] += left
            binned[..., end:] += right
            return
        period = self.period
        if period >= size:
            return
        rest = size - period
        below, above = binned[..., period:].copy(), binned[..., :rest].copy()
        binned[..., :rest] += below
        binned[..., period:] += above

    @property
    def banded_width(self) -> int:
        """The fine points per row that a banded plan pads ``binned`` to (zeros past the
        fine grid): the last axis of :meth:`smooth_padded`'s input."""
        return self._rows * self.refine[0]

    def smooth_padded(self, padded: Any, matmul: Any = None) -> Any:
        """:meth:`smooth` of a banded plan on binned weights already padded with zeros
        to ``(..., banded_width)``, so that splitting them into rows of ``r`` points is
        a reshape (no copy). ``matmul(a, b)``: the product to use (default: the
        backend's choice for small products; the host particle march passes
        ``numpy.matmul`` for its one large product, ``(Nt rows, r) @ (r, q)``)."""
        xp = self.backend.xp
        batch = tuple(padded.shape[:-1])
        r, g, q = self.refine[0], self.out_shape[0], self._q
        product = self.backend._small_matmul if matmul is None else matmul
        partial = product(xp.reshape(padded, (*batch, self._rows, r)), self._kernel_columns)
        terms = xp.take(xp.reshape(partial, (*batch, self._rows * q)), self._diagonals, axis=-1)
        out = xp.sum(xp.reshape(terms, (*batch, g, q)), axis=-1)
        return xp.clip(out, 0.0, None)

    def smooth(self, binned: Any) -> Any:
        """Convolve binned weights on the fine grid with the kernel; read the output grid.

        ``binned`` is ``(..., F)``; returns ``(..., G)``, each row smoothed alone.
        """
        xp = self.backend.xp
        batch = tuple(binned.shape[:-1])
        if self.smoothing == "banded":
            extra = self.backend.zeros((*batch, self.banded_width - self.shape[0]))
            return self.smooth_padded(xp.concat([binned, extra], axis=-1))
        spec = xp.fft.rfft(binned, n=self._fft_size, axis=-1) * self._spectrum
        conv = xp.fft.irfft(spec, n=self._fft_size, axis=-1)
        # conv[j] = sum_k binned[k] kernel[j - k + pad]; output point m sits at fine index
        # pad + m r, so it is read at conv index (pad + m r) + pad.
        lo, r = 2 * self.pads[0], self.refine[0]
        out = conv[..., lo : lo + (self.out_shape[0] - 1) * r + 1 : r]
        # FFT round-off leaves values of order eps * max where the density is ~0, some of
        # them negative; the exact sum is >= 0, so clipping only moves towards it.
        return xp.clip(out, 0.0, None)


def fine_grid(axis: np.ndarray, h: float, binning_rtol: float, dim: int = 1):
    """The fine binning grid of one axis: ``(size, r, pad, delta)``.

    ``delta = spacing / r`` is the largest that keeps the binning error within
    ``binning_rtol`` of the kernel's peak (``sum_i delta_i^2 / (8 h_i^2)``, so
    ``delta <= h sqrt(8 rtol / dim)``), ``pad = ceil(8 h / delta)`` points extend it past
    both ends, ``size = (G - 1) r + 1 + 2 pad``.
    """
    g = axis.shape[0]
    spacing = uniform_spacing(axis, h)
    target = h * math.sqrt(8.0 * binning_rtol / dim)
    r = max(1, math.ceil(spacing / target))
    delta = spacing / r
    pad = math.ceil(KDE_CUTOFF * h / delta)
    return (g - 1) * r + 1 + 2 * pad, r, pad, delta


def uniform_spacing(axis: np.ndarray, default: float) -> float:
    """Spacing of a uniform axis (``default`` for a single point); ValueError otherwise."""
    g = axis.shape[0]
    spacing = (axis[-1] - axis[0]) / (g - 1) if g > 1 else default
    if g > 1 and not np.allclose(np.diff(axis), spacing, rtol=1e-9, atol=0):
        raise ValueError("method='binned' needs a uniform grid; use method='exact'")
    return float(spacing)


def _fast_fft_size(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (sizes FFT libraries handle fastest)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best
