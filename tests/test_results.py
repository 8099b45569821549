"""MFGResult on the users' side: save/load round trips, the figure, the summary, equality."""

from __future__ import annotations

import dataclasses
import json
import sys

import matplotlib
import numpy as np
import pytest
from results_2d import synthetic_result_2d

import mfg_pde
from mfg_pde import MFGResult, solve_mfg
from mfg_pde._io import FORMAT_VERSION
from mfg_pde.problems import (
    EXAMPLES,
    crowd_2d_example,
    design_example,
    hello_2d_example,
    hello_example,
)

matplotlib.use("Agg")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def small_solve(backend, **options) -> MFGResult:
    """The hello example on a 21 x 10 grid: converges in about 25 damped iterations."""
    return solve_mfg(hello_example(Nx=21, Nt=10), backend=backend, **options)


@pytest.fixture(scope="module")
def solved(backend) -> MFGResult:
    return small_solve(backend)


@pytest.fixture(scope="module")
def numpy_result() -> MFGResult:
    return small_solve("numpy")


@pytest.fixture(scope="module")
def result_2d() -> MFGResult:
    """A 2D result of the shapes a solve returns: 9 x 7 points, 5 time levels."""
    return synthetic_result_2d()


# -- save / load ----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".npz", ".h5", ".hdf5"])
def test_save_load_round_trip_keeps_every_field(solved, backend, suffix, tmp_path):
    """Every dataclass field comes back identical (arrays bit for bit, same dtype)."""
    path = solved.save(tmp_path / f"result{suffix}")
    assert path == tmp_path / f"result{suffix}" and path.stat().st_size > 0
    loaded = mfg_pde.load(path)
    assert isinstance(loaded, MFGResult)
    names = [f.name for f in dataclasses.fields(MFGResult)]
    for name in names:
        original, copy = getattr(solved, name), getattr(loaded, name)
        if isinstance(original, np.ndarray):
            assert copy.dtype == original.dtype and copy.shape == original.shape, name
            np.testing.assert_array_equal(copy, original, err_msg=name)
        elif name == "residuals":
            assert copy.keys() == original.keys() == {"U", "M", "hjb", "fp"}
            for key in original:
                np.testing.assert_array_equal(copy[key], original[key], err_msg=key)
        else:
            assert copy == original, name
    assert loaded == solved
    # What the issue asks to keep, by name: backend/device, parameters, versions.
    assert loaded.backend == backend.name and loaded.device == backend.device
    assert loaded.problem["Nx"] == 21 and loaded.problem["sigma"] == 0.1
    assert loaded.metadata["mfg_pde"] == mfg_pde.__version__
    if backend.name != "numpy":
        assert backend.name in loaded.metadata  # the backend library's version


def test_npz_is_plain_arrays_and_json(numpy_result, tmp_path):
    """Readable without mfg_pde and without pickle: arrays plus one JSON document."""
    path = numpy_result.save(tmp_path / "r.npz")
    with np.load(path, allow_pickle=False) as data:
        assert set(data.files) == {
            *("U", "M", "x", "t", "metadata"),
            *("residual_U", "residual_M", "residual_hjb", "residual_fp"),
        }
        meta = json.loads(str(data["metadata"]))
        np.testing.assert_array_equal(data["M"], numpy_result.M)
    assert meta["format"] == "mfg_pde.MFGResult" and meta["iterations"] == numpy_result.iterations


def test_save_without_suffix_writes_npz(numpy_result, tmp_path):
    path = numpy_result.save(tmp_path / "sub" / "result")
    assert path.name == "result.npz" and path.read_bytes()[:2] == b"PK"
    assert mfg_pde.load(path) == numpy_result


def test_save_rejects_unknown_suffix(numpy_result, tmp_path):
    with pytest.raises(ValueError, match=r"\.txt.*\.npz, \.h5, \.hdf5"):
        numpy_result.save(tmp_path / "result.txt")


def test_hdf5_without_h5py_says_how_to_install(numpy_result, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)  # makes `import h5py` fail
    with pytest.raises(ImportError, match="pip install h5py"):
        numpy_result.save(tmp_path / "result.h5")
    assert not (tmp_path / "result.h5").exists()


def test_load_recognises_the_format_by_content(numpy_result, tmp_path):
    path = numpy_result.save(tmp_path / "result.h5")
    renamed = path.rename(tmp_path / "result.data")
    assert mfg_pde.load(renamed) == numpy_result


def test_load_rejects_files_that_are_not_results(numpy_result, tmp_path):
    np.savez(tmp_path / "other.npz", U=np.zeros(3))
    with pytest.raises(ValueError, match="not an mfg_pde result"):
        mfg_pde.load(tmp_path / "other.npz")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="neither an .npz nor an HDF5"):
        mfg_pde.load(tmp_path / "notes.txt")
    with pytest.raises(FileNotFoundError):
        mfg_pde.load(tmp_path / "missing.npz")


def test_load_refuses_a_newer_layout(numpy_result, tmp_path):
    path = numpy_result.save(tmp_path / "r.npz")
    with np.load(path) as data:
        arrays = dict(data)
    meta = json.loads(str(arrays["metadata"]))
    meta["format_version"] = FORMAT_VERSION + 1
    arrays["metadata"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="upgrade mfg_pde"):
        mfg_pde.load(path)


@pytest.mark.parametrize("suffix", [".npz", ".h5"])
def test_2d_round_trip_keeps_the_second_axis(result_2d, suffix, tmp_path):
    loaded = mfg_pde.load(result_2d.save(tmp_path / f"result{suffix}"))
    assert loaded == result_2d
    assert loaded.y.dtype == result_2d.y.dtype
    np.testing.assert_array_equal(loaded.y, result_2d.y)
    assert loaded.U.shape == loaded.M.shape == (5, 9, 7)
    assert loaded.problem["Nx"] == [9, 7] and loaded.problem["dy"] == result_2d.problem["dy"]


def test_layout_version_is_the_lowest_that_describes_the_file(numpy_result, result_2d, tmp_path):
    """1D files keep layout 1 (no ``y``): an mfg_pde that reads layout 1 only still
    loads them, and refuses a 2D file instead of loading it without its second axis."""
    for result, version, has_y in ((numpy_result, 1, False), (result_2d, 2, True)):
        with np.load(result.save(tmp_path / "r.npz"), allow_pickle=False) as data:
            assert json.loads(str(data["metadata"]))["format_version"] == version
            assert ("y" in data.files) == has_y


@pytest.mark.parametrize("suffix", [".npz", ".h5"])
def test_files_without_y_load_as_1d(numpy_result, suffix, tmp_path):
    """A file written before results had ``y`` (layout 1, no such array) loads with y=None."""
    path = numpy_result.save(tmp_path / f"old{suffix}")
    loaded = mfg_pde.load(path)
    assert loaded.y is None and loaded.dim == 1 and loaded == numpy_result


def test_y_is_the_last_field_so_positional_construction_still_works(numpy_result):
    names = [f.name for f in dataclasses.fields(MFGResult)]
    assert names[-1] == "y" and numpy_result.y is None
    positional = [getattr(numpy_result, name) for name in names[:-1]]
    assert MFGResult(*positional) == numpy_result


def test_2d_mass_is_summed_over_both_axes(result_2d):
    """The synthetic M has mass 1 at every level, with the problem's dx, dy or the grid's."""
    np.testing.assert_allclose(result_2d.mass, np.ones(5), rtol=1e-13)
    no_record = dataclasses.replace(result_2d, problem={})
    np.testing.assert_allclose(no_record.mass, result_2d.mass, rtol=1e-13)
    assert result_2d.dim == 2


def test_2d_summary_and_repr_describe_the_grid(result_2d):
    text = result_2d.summary()
    assert "problem    [0, 1] x [0, 1] x [0, 1], Nx=9x7, Nt=4, sigma=0.25" in text
    assert "arrays     U, M (5, 9, 7) on x (9,), y (7,), t (5,)" in text
    assert "mass       1.000000 at t=0" in text
    assert "U, M shape (5, 9, 7) on a 9 x 7 grid" in repr(result_2d)


def test_equality_sees_the_second_axis(result_2d, numpy_result):
    assert dataclasses.replace(result_2d) == result_2d
    assert dataclasses.replace(result_2d, y=result_2d.y + 1e-12) != result_2d
    assert dataclasses.replace(result_2d, y=None) != result_2d
    assert dataclasses.replace(numpy_result, y=np.zeros(0)) != numpy_result


def test_equality_sees_every_kind_of_difference(numpy_result):
    same = dataclasses.replace(numpy_result)
    assert same == numpy_result
    U = numpy_result.U.copy()
    U[3, 4] += 1e-12
    assert dataclasses.replace(numpy_result, U=U) != numpy_result
    residuals = {**numpy_result.residuals, "M": numpy_result.residuals["M"][:-1]}
    assert dataclasses.replace(numpy_result, residuals=residuals) != numpy_result
    problem = {**numpy_result.problem, "sigma": 0.2}
    assert dataclasses.replace(numpy_result, problem=problem) != numpy_result
    assert dataclasses.replace(numpy_result, device="cuda:0") != numpy_result
    assert numpy_result != "a string"
    # NaN compares equal to NaN here, so a saved result with NaN equals its copy.
    nan_timings = {**numpy_result.timings, "hjb": float("nan")}
    with_nan = dataclasses.replace(numpy_result, timings=nan_timings, U=U * np.nan)
    assert with_nan == dataclasses.replace(with_nan, U=U * np.nan)


# -- plot -----------------------------------------------------------------------------------


def test_plot_draws_the_arrays_of_the_result(numpy_result, tmp_path):
    """The figure shows M itself, U at five times from 0 to T, and both residual series."""
    path = tmp_path / "figs" / "result.png"
    fig = numpy_result.plot(path)
    assert path.read_bytes()[:8] == PNG_MAGIC
    ax_m, ax_u, ax_r, colorbar = fig.axes
    assert colorbar.get_ylabel() == "m(t, x)"
    mesh = ax_m.collections[0]
    np.testing.assert_array_equal(np.asarray(mesh.get_array()).ravel(), numpy_result.M.ravel())
    lines = ax_u.get_lines()
    assert len(lines) == 5
    np.testing.assert_array_equal(lines[0].get_ydata(), numpy_result.U[0])
    np.testing.assert_array_equal(lines[-1].get_ydata(), numpy_result.U[-1])
    residual_lines = {line.get_label(): line.get_ydata() for line in ax_r.get_lines()}
    for key in ("U", "M"):
        np.testing.assert_array_equal(residual_lines[key], numpy_result.residuals[key])
    assert "converged" in fig._suptitle.get_text()


def test_plot_without_path_returns_an_open_figure(numpy_result):
    import matplotlib.pyplot as plt

    fig = numpy_result.plot()
    assert plt.fignum_exists(fig.number)
    plt.close(fig)


def test_plot_2d_draws_density_snapshots_value_and_residuals(result_2d, tmp_path):
    """Four density snapshots from 0 to T on one colour scale, u(0), the residuals."""
    path = tmp_path / "figs" / "result_2d.png"
    fig = result_2d.plot(path)
    assert path.read_bytes()[:8] == PNG_MAGIC
    density_axes = [ax for ax in fig.axes if ax.get_title().startswith("m at t = ")]
    assert [ax.get_title() for ax in density_axes] == [
        f"m at t = {t:.3g}" for t in result_2d.t[[0, 1, 2, 4]]
    ]
    limits = set()
    for ax, n in zip(density_axes, [0, 1, 2, 4], strict=True):
        mesh = ax.collections[0]
        # pcolormesh draws rows along y: the array is M[n] transposed.
        np.testing.assert_array_equal(np.asarray(mesh.get_array()), result_2d.M[n].T)
        limits.add(mesh.get_clim())
        assert ax.get_aspect() == 1.0
        assert ax.get_xlim() == (result_2d.x[0] - 0.0625, result_2d.x[-1] + 0.0625)
    assert limits == {(result_2d.M.min(), result_2d.M.max())}
    (ax_u,) = [ax for ax in fig.axes if ax.get_title().startswith("Value function")]
    np.testing.assert_array_equal(np.asarray(ax_u.collections[0].get_array()), result_2d.U[0].T)
    assert len(ax_u.collections) > 1  # the level lines
    (ax_r,) = [ax for ax in fig.axes if ax.get_title() == "Residuals"]
    residual_lines = {line.get_label(): line.get_ydata() for line in ax_r.get_lines()}
    np.testing.assert_array_equal(residual_lines["M"], result_2d.residuals["M"])
    assert "converged after 3 iterations" in fig._suptitle.get_text()


def test_plot_density_at_chosen_times(result_2d, numpy_result, tmp_path):
    import matplotlib.pyplot as plt

    path = tmp_path / "density.pdf"
    fig = result_2d.plot_density(times=[0.0, 0.6], path=path)
    assert path.read_bytes()[:4] == b"%PDF"
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["m at t = 0", "m at t = 0.5"]  # the nearest time levels
    fig = numpy_result.plot_density()
    lines = fig.axes[0].get_lines()
    assert len(lines) == 4
    np.testing.assert_array_equal(lines[-1].get_ydata(), numpy_result.M[-1])
    plt.close(fig)
    with pytest.raises(ValueError, match=r"times must lie in \[0, 1\], got \[1.5\]"):
        numpy_result.plot_density(times=[0.5, 1.5])


def test_plot_refuses_results_that_are_not_1d_or_2d(numpy_result, result_2d):
    flat = numpy_result
    shape_2d = (len(flat.t), 4, 5)
    no_axis = dataclasses.replace(
        flat, U=np.zeros(shape_2d), M=np.zeros(shape_2d), x=np.zeros((4, 5, 2))
    )
    with pytest.raises(NotImplementedError, match="one-dimensional.*y of shape None"):
        no_axis.plot()
    shape_3d = (*result_2d.U.shape, 3)
    cube = dataclasses.replace(result_2d, U=np.zeros(shape_3d), M=np.zeros(shape_3d))
    with pytest.raises(NotImplementedError, match=r"two-dimensional.*\(5, 9, 7, 3\)"):
        cube.plot()
    with pytest.raises(NotImplementedError, match="plot_density"):
        cube.plot_density()


# -- summary and metadata -------------------------------------------------------------------


def test_summary_says_what_where_how_well_and_how_fast(numpy_result):
    text = numpy_result.summary()
    assert text.startswith(f"MFGResult: converged after {numpy_result.iterations} iterations")
    assert "backend numpy on cpu" in text
    assert f"U {numpy_result.residuals['U'][-1]:.3e}" in text
    assert f"{numpy_result.timings['total']:.3g} s total" in text
    assert "Nx=21, Nt=10, sigma=0.1" in text
    assert f"mfg_pde {mfg_pde.__version__}" in text


def test_summary_of_an_unconverged_solve_says_so():
    result = small_solve("numpy", max_iterations=2)
    assert result.summary().startswith("MFGResult: NOT converged after 2 iterations")
    assert "max_iterations=2" in result.summary()


def test_examples_in_the_package_are_what_they_say():
    """``design_example()`` is ``MFGProblem()``; the hello problem has its documented data."""
    assert design_example().parameters() == mfg_pde.MFGProblem().parameters()
    hello = hello_example(Nx=11)
    x = hello.x
    assert hello.sigma == 0.1 and hello.T == 1.0 and hello.Nx == 11
    np.testing.assert_allclose(hello.g, (x - 0.5) ** 2)
    np.testing.assert_allclose(hello.running_cost(x, hello.m0, 0.0), -0.5 * hello.m0)
    m0 = np.exp(-50 * (x - 0.5) ** 2)
    np.testing.assert_allclose(hello.m0, m0 / (m0.sum() * hello.dx))


def test_2d_examples_have_their_documented_data_and_take_overrides():
    hello = hello_2d_example()
    assert hello.dim == 2 and hello.shape == (101, 128, 128) and hello.boundary == "noflux"
    assert (hello.sigma, hello.control_cost, hello.T) == (0.1, 1.0, 1.0)
    x, y = hello.coords
    np.testing.assert_allclose(hello.g, (x - 0.5) ** 2 + (y - 0.5) ** 2)
    np.testing.assert_allclose(hello.running_cost(x, y, hello.m0, 0.0), -0.5 * hello.m0)
    m0 = np.exp(-50 * ((x - 0.5) ** 2 + (y - 0.5) ** 2))
    np.testing.assert_allclose(hello.m0, m0 / (m0.sum() * hello.dx * hello.dy))

    crowd = crowd_2d_example()
    assert crowd.shape == (41, 48, 48) and crowd.bounds == ((0.0, 1.0), (0.0, 1.0))
    assert crowd.boundary == "noflux" and crowd.cost_parameters == {"c": 0.1}
    x, y = crowd.coords
    np.testing.assert_allclose(crowd.g, np.hypot(x - 1.0, y - 0.5))
    m0 = np.exp(-50 * ((x - 0.3) ** 2 + (y - 0.5) ** 2))
    np.testing.assert_allclose(crowd.m0, m0 / (m0.sum() * crowd.cell_volume))
    f = crowd.running_cost(x, y, crowd.m0, 0.0, **crowd.cost_parameters)
    np.testing.assert_allclose(f, 0.1 * crowd.m0)

    small = crowd_2d_example(Nx=(12, 10), Nt=5, cost_parameters={"c": 0.5}, sigma=0.3)
    assert small.shape == (6, 12, 10) and small.cost_parameters == {"c": 0.5}
    assert small.sigma == 0.3 and small.replace(c=0.7).cost_parameters == {"c": 0.7}
    assert hello_2d_example(Nx=16, boundary="periodic").shape == (101, 16, 16)
    assert EXAMPLES["hello_2d"] is hello_2d_example and EXAMPLES["crowd_2d"] is crowd_2d_example
