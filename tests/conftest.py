import atexit
import collections
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Tests compare float32 results with float64 references; keep XLA on its default
# (exact) CPU math and quiet.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# One XLA compilation cache for the session: its workers and every process they start
# (the environment is inherited) share compiled programs, which the suite compiles many
# times over (the tiny model's train step, in every CLI run). A cached program is the
# program XLA would compile again, so no result changes. The first process (the xdist
# controller, or pytest alone) makes the folder and removes it at exit.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="jaxformer-test-xla-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)

# The suite's programs are small and compiled once each: LLVM's optimisations cost more
# than they save (the suite's time is compiling, not running), so XLA:CPU's backend runs
# unoptimised here. Every comparison a test makes is within one setting: a run and its
# resumed run, or a result and a float64 reference with its tolerance.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    flags = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = f"{flags} --xla_backend_optimization_level=0".strip()


def with_devices(n: int) -> str:
    """The XLA_FLAGS of a subprocess with n CPU devices: the suite's flags, and the count."""
    return f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={n}".strip()


REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CI = os.environ.get("CI") == "true"  # .ci/run: there, a missing tool or data set is a failure


@pytest.fixture
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent (it holds the shared corpora and GPT-2 ranks)")
    return SHARED


@pytest.fixture
def pdflatex() -> str:
    """The pdflatex command; a skip where it is missing, a failure under CI=true (.ci/run
    installs it)."""
    path = shutil.which("pdflatex")
    if path is None:
        why = "pdflatex is not installed (Debian: apt-get install texlive-latex-base)"
        if CI:
            pytest.fail(f"{why}; under CI=true the LaTeX tests must run")
        pytest.skip(why)
    return path


# -- the skips, summed up in one line at the end of the run ------------------------------
_skips: list[str] = []  # the reason of each skipped test (on the xdist controller too)


def _is_shared(reason: str) -> bool:
    """Whether a skip is for want of the shared corpora or GPT-2 ranks (../shared)."""
    return "shared" in reason.lower()


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        _skips.append(reason.removeprefix("Skipped: "))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    counts = collections.Counter(_skips)
    summary = "; ".join(f"{n} × {reason}" for reason, n in counts.most_common())
    terminalreporter.write_line(
        f"skipped: {len(_skips)} tests" + (f" ({summary})" if _skips else "")
    )
    shared = sum(n for reason, n in counts.items() if _is_shared(reason))
    if CI and shared:
        terminalreporter.write_line(
            f"CI=true: {shared} tests that need {SHARED} skipped; CI must run them: failing",
            red=True,
        )


def pytest_sessionfinish(session, exitstatus):
    if CI and any(_is_shared(r) for r in _skips) and not hasattr(session.config, "workerinput"):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# -- the order: the files with slow tests first ------------------------------------------
# `make test` sends each file to one worker (--dist loadfile) in collection order; the long
# files first, then the many short ones fill in, so neither worker is left with a long
# file at the end while the other waits (longest first: the classic packing rule).
def pytest_collection_modifyitems(config, items):
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)  # stable: each file keeps its order
