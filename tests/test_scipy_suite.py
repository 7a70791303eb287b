"""SciPy's own tests of convolve, correlate, fftconvolve and oaconvolve, on maxconv.

The tests are those of the installed (pinned) SciPy, loaded from
scipy/signal/tests/test_signaltools.py by `scipy_adapter` with maxconv
substituted for every 1-D and row-wise call (see that module for the routing
rule); calls over several axes stay SciPy's, as the issue scopes them.

Run as SciPy runs them: NumPy as the only array backend (`xp`), warnings as
errors (SciPy's pytest.ini), and every test of these four functions collected,
its `slow` ones included. The one exemption the issue allows is a test that
fails only because it matches SciPy's exact error-message wording:
`ERROR_WORDING` lists those by node id, each xfail(strict=True) and only for
an AssertionError (pytest.raises(match=...) failing its pattern), so a wrong
exception type, no exception, or a passing test still shows.

Calls to oaconvolve are also checked against SciPy's result: TestOAConvolve
takes its expected values from fftconvolve, which maxconv now serves too
(MAXCONV_SCIPY_SUITE_CROSSCHECK=all checks every maxconv call; see
scipy_adapter). MAXCONV_SCIPY_SUITE_DEVICE picks maxconv's device (default
"cpu"). The session summary counts the calls each way and names the collected
tests that never reached maxconv.
"""

from __future__ import annotations

import collections

import numpy as np
import pytest
import scipy
import scipy_adapter

_scipy_tests = scipy_adapter.load_signaltools_tests()

# SciPy runs its suite with filterwarnings = error (its pytest.ini); the
# tests' own filterwarnings marks are closer and take precedence.
pytestmark = [pytest.mark.filterwarnings("error")]


def _subset(original: type, methods: list[str]) -> type:
    """`original` (a SciPy class about other functions) with only `methods`,
    its class marks kept, for the tests in it that exercise these four."""
    members = {method: getattr(original, method) for method in methods}
    marks = [mark for cls in original.__mro__ for mark in cls.__dict__.get("pytestmark", [])]
    members["pytestmark"] = marks
    members["__module__"] = original.__module__
    return type(original.__name__, (), members)


# Every class and function of test_signaltools.py about the four functions
# (the SciPy versions uv.lock resolves differ a little: names absent from the
# installed one are listed in the session summary).
WHOLE = [
    "TestConvolve",
    "TestFFTConvolve",
    "TestOAConvolve",
    "TestAllFreqConvolves",
    "TestCorrelateReal",
    "TestCorrelate",
    "TestCorrelateComplex",
    "test_convolve_longdtype_input",
    # correlation_lags' test correlates two 1-D signals to find the lag.
    "test_correlation_lags",
]
# The tests comparing convolve/correlate with np.convolve/np.correlate and
# convolve2d/correlate2d live in the 2-D classes.
PARTS = {
    "TestConvolve2d": ["test_consistency_convolve_funcs"],
    "TestCorrelate2d": ["test_consistency_correlate_funcs", "test_consistency_correlate_funcs_2"],
}
ABSENT: list[str] = []
for _name in WHOLE:
    if hasattr(_scipy_tests, _name):
        globals()[_name] = getattr(_scipy_tests, _name)
    else:
        ABSENT.append(_name)
for _name, _methods in PARTS.items():
    _class = getattr(_scipy_tests, _name, None)
    _present = [method for method in _methods if hasattr(_class, method)]
    ABSENT.extend(f"{_name}::{method}" for method in _methods if method not in _present)
    if _present:
        globals()[_name] = _subset(_class, _present)
if not {"TestConvolve", "TestFFTConvolve", "TestCorrelateReal"}.isdisjoint(ABSENT):
    raise ImportError(f"{scipy_adapter.signaltools_path()} lacks {ABSENT}: adapt this module")

# Tests that fail only because they match SciPy's exact error-message wording
# (node ids after the module). Keep it to those: see the module docstring.
ERROR_WORDING: frozenset[str] = frozenset(
    {
        # pytest.raises(ValueError, match=...) on SciPy's messages for
        # mode="chips" ("acceptable mode flags are 'valid', 'same', or 'full'")
        # and for axes=[1] / axes=[-2] on 1-D input ("axes exceeds
        # dimensionality of input"); its other flags are SciPy's own to check.
        "TestAllFreqConvolves::test_invalid_flags[fftconvolve]",
        "TestAllFreqConvolves::test_invalid_flags[oaconvolve]",
    }
)


@pytest.fixture
def xp(request: pytest.FixtureRequest):
    """SciPy's `xp` fixture with NumPy, the one backend here: what SciPy's
    conftest yields for NumPy, after its skip/xfail_xp_backends marks."""
    for kind in ("skip", "xfail"):
        for marker in request.node.iter_markers(f"{kind}_xp_backends"):
            if marker.args and marker.args[0] == "numpy":
                reason = marker.kwargs.get("reason") or "not run with NumPy (SciPy's mark)"
                getattr(pytest, kind)(reason=reason)
    try:
        from scipy._lib._array_api import array_namespace
    except ImportError:
        return np
    return array_namespace(np.empty(0))


@pytest.fixture
def num_parallel_threads() -> int:
    """SciPy's fallback when pytest-run-parallel is absent."""
    return 1


@pytest.fixture(autouse=True)
def _scipy_suite_test(request: pytest.FixtureRequest):
    """Attribute maxconv calls to the running test; apply the wording xfails."""
    test_id = request.node.nodeid.split("::", 1)[1]
    if test_id in ERROR_WORDING:
        request.applymarker(
            pytest.mark.xfail(
                strict=True, raises=AssertionError, reason="matches scipy's exact error wording"
            )
        )
    scipy_adapter.current_test = request.node.nodeid
    yield
    scipy_adapter.current_test = None


class _RoutingSummary:
    def __init__(self) -> None:
        self.collected: list[str] = []

    def pytest_terminal_summary(self, terminalreporter) -> None:
        routes = scipy_adapter.ROUTES
        write = terminalreporter.write_line
        terminalreporter.section(f"SciPy {scipy.__version__} signal tests on maxconv")
        checked = ", ".join(sorted(scipy_adapter.CROSSCHECK)) or "none"
        write(
            f"maxconv on device {scipy_adapter.DEVICE!r}; calls cross-checked against SciPy: "
            f"{checked} (MAXCONV_SCIPY_SUITE_CROSSCHECK)"
        )
        for name in scipy_adapter.ADAPTED:
            write(
                f"{name:12s} maxconv {routes[name, 'maxconv']:6d} calls, "
                f"scipy (N-D) {routes[name, 'scipy']:6d} calls"
            )
        never = collections.Counter(
            nodeid.split("::", 1)[1].split("[", 1)[0]
            for nodeid in self.collected
            if nodeid not in scipy_adapter.TESTS_ON_MAXCONV
        )
        total = sum(never.values())
        write(
            f"{len(self.collected) - total} of {len(self.collected)} tests run called maxconv; "
            f"{total} never did (N-D over several axes only, or stopped before):"
        )
        for test, count in sorted(never.items()):
            write(f"    {test} ({count})")
        if ABSENT:
            write(f"not in this SciPy's test_signaltools.py: {', '.join(ABSENT)}")


@pytest.fixture(scope="session", autouse=True)
def _routing_summary(request: pytest.FixtureRequest):
    summary = _RoutingSummary()
    request.config.pluginmanager.register(summary, "maxconv-scipy-suite-summary")
    yield summary


@pytest.fixture(autouse=True)
def _count_test(_routing_summary: _RoutingSummary, request: pytest.FixtureRequest):
    _routing_summary.collected.append(request.node.nodeid)
