"""Run SciPy's own convolve/correlate tests with maxconv substituted for 1-D calls.

SciPy ships its tests inside the installed package
(scipy/signal/tests/test_signaltools.py). `load_signaltools_tests` executes a
copy of that module under a private name, with the four functions it imports
from scipy.signal (convolve, correlate, fftconvolve, oaconvolve), and its
`signal.convolve`-style attribute uses, replaced by the adapters below. The
SciPy files themselves are not touched, nor is the scipy.signal module.

Routing (the issue's scope: maxconv is a drop-in for everything 1-D along an
axis, N-D convolution over several axes stays SciPy's):

* convolve / correlate: to maxconv when either input is 0-d or 1-D (so the
  mismatched-dimension calls that SciPy refuses, 1-D with 0-d or with 2-D,
  are maxconv's to refuse too), with the caller's `method`; every other call
  (both inputs 2-D or more: N-D over all axes) to SciPy's own function.
  A 2-D in1 with a 1-D in2 goes to maxconv too, which takes in2 as one
  kernel for every row where SciPy refuses the call; no SciPy test makes it.
* fftconvolve / oaconvolve: to maxconv.fftconvolve / oaconvolve when `axes` names
  exactly one axis (an int, or a sequence of one int: row-wise along that
  axis, any rank), or when `axes` is None and either input is 0-d or 1-D;
  everything else (several axes, or axes=None on N-D inputs, and malformed
  `axes` that SciPy rejects) to SciPy.

Every call is counted per function and route (`ROUTES`), and per test
(`TESTS_ON_MAXCONV`), for the session summary.

Cross-check. Under substitution some tests compare maxconv with itself:
every TestOAConvolve test takes its expected result from fftconvolve, and
both adapters make the very same maxconv call, so those tests could only
catch a crash or a dtype. So by default each oaconvolve call routed to
maxconv is also checked against SciPy's fftconvolve on the same arguments
(the reference those tests meant): shape, dtype, and values within a
tolerance of the result's precision. MAXCONV_SCIPY_SUITE_CROSSCHECK names
the functions to check this way: "all", "none", or a comma-separated list
(default "oaconvolve"); "all" is stricter than SciPy's tests (their own
tolerances are looser), a tool to find where maxconv differs. SciPy refusing
inputs that maxconv computed counts as a difference too.
"""

from __future__ import annotations

import ast
import builtins
import collections
import functools
import importlib.util
import os
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy
import scipy.signal

import maxconv

PRIVATE_NAME = "_maxconv_scipy_test_signaltools"
ADAPTED = ("convolve", "correlate", "fftconvolve", "oaconvolve")

# The device maxconv runs on in this suite (the GPU machine can set "gpu").
DEVICE = os.environ.get("MAXCONV_SCIPY_SUITE_DEVICE", "cpu")

_crosscheck_names = os.environ.get("MAXCONV_SCIPY_SUITE_CROSSCHECK", "oaconvolve").strip()
CROSSCHECK: frozenset[str] = (
    frozenset(ADAPTED)
    if _crosscheck_names == "all"
    else frozenset(name.strip() for name in _crosscheck_names.split(",")) & set(ADAPTED)
)

# (function name, "maxconv" | "scipy") -> number of calls.
ROUTES: collections.Counter[tuple[str, str]] = collections.Counter()
# Node ids of the tests that called maxconv at least once.
TESTS_ON_MAXCONV: set[str] = set()
current_test: str | None = None

_original = {name: getattr(scipy.signal, name) for name in ADAPTED}


def _ndim(x: object) -> int | None:
    try:
        return np.ndim(x)
    except Exception:  # ragged or odd input: let maxconv judge it
        return None


def _low_rank(*inputs: object) -> bool:
    """True when some input is 0-d or 1-D (or of no clear rank)."""
    return any(n is None or n <= 1 for n in map(_ndim, inputs))


def _single_axis(axes: object) -> int | None:
    """The axis when `axes` names exactly one (int or 1-sequence of int), else None."""
    if isinstance(axes, (int, np.integer)) and not isinstance(axes, (bool, np.bool_)):
        return int(axes)
    if isinstance(axes, (str, bytes)):
        return None
    try:
        items = list(axes)  # type: ignore[call-overload]
    except TypeError:
        return None
    if len(items) == 1:
        return _single_axis(items[0])
    return None


def _record(name: str, route: str) -> None:
    ROUTES[name, route] += 1
    if route == "maxconv" and current_test is not None:
        TESTS_ON_MAXCONV.add(current_test)


# Relative precision expected of a result of each kind, against SciPy's.
_TOLERANCE = {np.dtype(np.float16): 2e-3, np.dtype(np.float32): 1e-5, np.dtype(np.complex64): 1e-5}


def _crosscheck(name: str, result, in1, in2, reference) -> None:
    """Fail unless `result` (maxconv's) matches `reference()` (SciPy's)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            expected = np.asarray(reference())
        except Exception as error:
            raise AssertionError(
                f"cross-check: scipy.signal.{name} refuses these inputs "
                f"({type(error).__name__}: {error}) but maxconv returned {np.shape(result)}"
            ) from None
        x, h = np.asarray(in1), np.asarray(in2)
    actual = np.asarray(result)
    where = f"cross-check {name}{np.shape(in1)}x{np.shape(in2)}"
    assert actual.shape == expected.shape, f"{where}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"{where}: dtype {actual.dtype} != {expected.dtype}"
    if actual.size == 0 or not (np.all(np.isfinite(x)) and np.all(np.isfinite(h))):
        return
    bound = float(np.max(np.abs(x), initial=0.0)) * float(np.sum(np.abs(h)))
    if actual.dtype.kind in "iub":
        if bound < 2.0**50:
            np.testing.assert_array_equal(actual, expected, err_msg=where)
        return
    tolerance = _TOLERANCE.get(actual.dtype, 1e-12)
    np.testing.assert_allclose(
        actual, expected, rtol=tolerance, atol=tolerance * bound, err_msg=where
    )


def _adapter(name: str, mc_function):
    original = _original[name]

    if name in ("convolve", "correlate"):

        def adapted(in1, in2, mode="full", method="auto"):
            if _low_rank(in1, in2):
                _record(name, "maxconv")
                result = mc_function(in1, in2, mode, axis=-1, method=method, device=DEVICE)
                if name in CROSSCHECK:
                    _crosscheck(name, result, in1, in2, lambda: original(in1, in2, mode, method))
                return result
            _record(name, "scipy")
            return original(in1, in2, mode=mode, method=method)

    else:

        def adapted(in1, in2, mode="full", axes=None):
            axis = _single_axis(axes) if axes is not None else None
            if axis is None and axes is None and _low_rank(in1, in2):
                axis = -1
            if axis is not None:
                _record(name, "maxconv")
                result = mc_function(in1, in2, mode, axis=axis, device=DEVICE)
                if name in CROSSCHECK:
                    # SciPy's fftconvolve for oaconvolve too: the same result
                    # by definition, and TestOAConvolve monkeypatches
                    # _signaltools.fftconvolve to catch oaconvolve's fallbacks.
                    reference = _original["fftconvolve"]
                    _crosscheck(name, result, in1, in2, lambda: reference(in1, in2, mode, axes))
                return result
            _record(name, "scipy")
            return original(in1, in2, mode=mode, axes=axes)

    functools.update_wrapper(adapted, original)
    adapted.__wrapped_scipy__ = original  # type: ignore[attr-defined]
    return adapted


ADAPTERS = {
    "convolve": _adapter("convolve", maxconv.convolve),
    "correlate": _adapter("correlate", maxconv.correlate),
    "fftconvolve": _adapter("fftconvolve", maxconv.fftconvolve),
    "oaconvolve": _adapter("oaconvolve", maxconv.oaconvolve),
}


class _SignalProxy(types.ModuleType):
    """scipy.signal as the loaded tests see it: the adapters, else the real module."""

    def __init__(self) -> None:
        super().__init__("scipy.signal")
        self.__dict__.update(ADAPTERS)

    def __getattr__(self, attribute: str):
        return getattr(scipy.signal, attribute)


SIGNAL_PROXY = _SignalProxy()


def _register_capabilities() -> None:
    """make_xp_test_case(f) looks f up in SciPy's capabilities table: give the
    adapters their originals' entries (no-op on SciPy versions without one)."""
    try:
        from scipy._lib._array_api import xp_capabilities_table
    except ImportError:
        return
    for name, adapted in ADAPTERS.items():
        if _original[name] in xp_capabilities_table:
            xp_capabilities_table[adapted] = xp_capabilities_table[_original[name]]


def _importer(real_import):
    def import_(name, globals=None, locals=None, fromlist=(), level=0):
        if name == "scipy.signal" and fromlist and level == 0:
            return SIGNAL_PROXY
        return real_import(name, globals, locals, fromlist, level)

    return import_


def signaltools_path() -> Path:
    return Path(scipy.__file__).resolve().parent / "signal" / "tests" / "test_signaltools.py"


def _compile(source: str, path: Path):
    """The module's code with pytest's assertion rewriting, as a collected test
    module would have (plain compile if this pytest's private API moved)."""
    tree = ast.parse(source, filename=str(path))
    try:
        from _pytest.assertion.rewrite import rewrite_asserts

        rewrite_asserts(tree, source.encode(), str(path))
    except Exception:
        tree = ast.parse(source, filename=str(path))
    return compile(tree, str(path), "exec", dont_inherit=True)


def load_signaltools_tests() -> types.ModuleType:
    """Execute SciPy's test_signaltools.py with the adapters in place of the
    four functions (imports and `signal.` attributes alike)."""
    if PRIVATE_NAME in sys.modules:
        return sys.modules[PRIVATE_NAME]
    _register_capabilities()
    path = signaltools_path()
    spec = importlib.util.spec_from_file_location(PRIVATE_NAME, path)
    module = importlib.util.module_from_spec(spec)
    namespace = dict(builtins.__dict__)
    namespace["__import__"] = _importer(builtins.__import__)
    module.__dict__["__builtins__"] = namespace
    sys.modules[PRIVATE_NAME] = module
    try:
        with warnings.catch_warnings():
            # SciPy's own markers (skip_xp_backends, fail_slow, ...) are
            # registered by its conftest, which this run does not load.
            warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
            exec(_compile(path.read_text(encoding="utf-8"), path), module.__dict__)
    except BaseException:
        del sys.modules[PRIVATE_NAME]
        raise
    # `from scipy import signal` bound the real module: the tests' own
    # signal.convolve(...) calls go through the adapters too.
    module.signal = SIGNAL_PROXY
    return module
