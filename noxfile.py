"""Every check, by name; `nox -l` is the table of contents, plain `nox` what CI runs.

The default run does each thing once: lint, types, the whole test suite with
coverage (contracts replay and verify included), then the quick benchmark,
which prints its figures. The other sessions are for a developer's inner loop
or for longer runs of what the default run does in a bounded way.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import nox

# Bytecode. Where PYTHONDONTWRITEBYTECODE is set (the machines this project's CI runs on set
# it), uv's installs leave no .pyc and every process compiles every module it imports: each
# pytest worker re-rewrote about 500 modules (9 s) and `pslab sync --help` took 1.6 s instead
# of 0.6 s, for each of the suite's hundred `pslab` processes. Sessions keep their bytecode
# in .nox/pycache instead; the source tree still gets no __pycache__ folders.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
os.environ["PYTHONPYCACHEPREFIX"] = str(Path(__file__).resolve().parent / ".nox" / "pycache")

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = [
    "lint", "typecheck", "tests", "lowest", "bench", "examples", "docs", "browser",
]  # fmt: skip

# typecheck, tests, fast and bench run against the newest releases pyproject.toml allows:
# their installs upgrade every run, so a reused virtualenv does not keep last month's
# versions. `lowest` runs against the floors. Together they test both ends of each range.
NEWEST = ("--upgrade",)

# The package's own folder holds links to the three top-level parts; ruff sees each file once.
SOURCES = [
    "postscript_audience_lab",
    "emulator",
    "sync",
    "contracts",
    "tests",
    "examples",
    "noxfile.py",
]
EXAMPLES = Path(__file__).resolve().parent / "examples"


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the packages, the tests and this file."""
    session.install(*NEWEST, "ruff>=0.15")
    session.run("ruff", "check", *SOURCES)
    session.run("ruff", "format", "--check", *SOURCES)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the packages and the tests, with the newest releases."""
    session.install(*NEWEST, "-e", ".[dev,browser]")
    session.run("mypy", "--strict")


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite (unit, property, contracts, end-to-end) with a coverage figure.

    Tests marked `no_cover` (property and whole-workload runs, which repeat lines other
    tests cover) run untraced; slow tests start first (tests/conftest.py).
    """
    session.install(*NEWEST, "-e", ".[test]")
    session.run(
        "pytest",
        "-q",
        "-m",
        "not bench",
        "-n",
        "auto",
        "--cov",
        "--cov-report=term",
        *session.posargs,
    )


@nox.session
def fast(session: nox.Session) -> None:
    """The inner loop: every test not marked slow, stopping at the first failure."""
    session.install(*NEWEST, "-e", ".[test]")
    session.run("pytest", "-q", "-x", "-m", "not slow and not bench", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """The quick benchmark, held to its targets, printing its table (docs/design/benchmark.md)."""
    session.install(*NEWEST, "-e", ".[test]")
    session.run("pytest", "-q", "-s", "-m", "bench", "tests/e2e/test_bench.py")


@nox.session(venv_backend="uv", reuse_venv=False)
def lowest(session: nox.Session) -> None:
    """mypy --strict and the tests not marked slow, with every direct dependency at its floor.

    uv's lowest-direct resolution installs the oldest release each floor in pyproject.toml
    allows (the libraries those bring are at their newest), in a fresh virtualenv, since an
    install into an old one would keep what is there. A floor this session does not pass
    with is a floor that is not true.
    """
    session.install("--resolution", "lowest-direct", "-e", ".[dev]")
    session.run("uv", "pip", "list", "--format", "freeze", silent=False, external=True)
    session.run("python", "-c", FLOORS_ARE_INSTALLED)
    session.run("mypy", "--strict", "--cache-dir", str(Path(session.create_tmp()) / "mypy"))
    session.run(
        "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow and not bench", "-n", "auto",
        *session.posargs,
    )  # fmt: skip


@nox.session(reuse_venv=False)
def examples(session: nox.Session) -> None:
    """examples/ as a user runs it: the built wheel and pytest alone in a fresh virtualenv.

    shipping_notifier is an integration tested through the plugin, requests_notifier and
    aiohttp_notifier the same with those clients; crowded_names is a project
    whose own packages are called emulator, sync, contracts, lab and tests, copied to a
    temporary folder outside this repository and checked with pytest and mypy --strict.
    """
    dist = Path(session.create_tmp()).resolve() / "dist"
    for old_wheel in dist.glob("*.whl"):
        old_wheel.unlink()
    # uv builds the wheel a user would get; it is installed here so that the session needs
    # nothing beside nox (`pip install nox` alone does not bring it).
    session.install("uv")
    session.run("uv", "build", "--wheel", "--out-dir", str(dist))
    (wheel,) = dist.glob("postscript_audience_lab-*.whl")
    session.install(str(wheel), "pytest")
    session.chdir(EXAMPLES / "shipping_notifier")  # away from the checkout's own package
    session.run("python", "-c", WHEEL_HOLDS_ONE_PACKAGE, str(wheel))
    session.run("pytest", "-q")
    # The same suite again under xdist (one postscript_server per worker), property test included.
    session.install("pytest-xdist", "hypothesis")
    session.run("pytest", "-q", "-n", "2")

    # Code that calls Postscript with requests, and with aiohttp: the wheel's extras bring
    # responses and aioresponses, which route those clients as respx routes httpx.
    session.install(f"{wheel}[requests,aiohttp]")
    for example in ("requests_notifier", "aiohttp_notifier"):
        session.chdir(EXAMPLES / example)
        session.run("pytest", "-q", "-p", "no:cacheprovider")

    session.install("mypy")
    with tempfile.TemporaryDirectory(prefix="crowded-names-") as folder:
        project = Path(folder) / "crowded_names"
        shutil.copytree(EXAMPLES / "crowded_names", project)
        session.chdir(project)
        session.run("pytest", "-q", "-p", "no:cacheprovider")
        session.run("mypy", "--cache-dir", str(Path(folder) / "mypy-cache"))


# Run by the lowest session: every direct dependency, extras included, is installed at exactly
# the floor pyproject.toml gives it, so the floors written are the versions tested.
FLOORS_ARE_INSTALLED = """
from importlib.metadata import requires, version
from packaging.requirements import Requirement
from packaging.version import Version
wrong = set()
installed = ("", "dev", "test", "testing", "requests", "aiohttp")  # what [dev] brings in
for line in requires("postscript-audience-lab") or []:
    need = Requirement(line)
    if need.name == "postscript-audience-lab":
        continue
    if need.marker and not any(need.marker.evaluate({"extra": extra}) for extra in installed):
        continue  # an extra the session does not install ([docs], [browser])
    (floor,) = [spec.version for spec in need.specifier if spec.operator == ">="]
    if Version(version(need.name)) != Version(floor):
        wrong.add(f"{need.name}: floor {floor}, installed {version(need.name)}")
assert not wrong, "floors not installed as written: " + "; ".join(sorted(wrong))
print("every direct dependency is at its floor")
"""


# Run by the examples session with the wheel's path: its top level is one import package and
# its dist-info, and that package is the one the session's interpreter imports.
WHEEL_HOLDS_ONE_PACKAGE = """
import sys, zipfile
import postscript_audience_lab
names = zipfile.ZipFile(sys.argv[1]).namelist()
tops = sorted({name.split("/")[0] for name in names})
assert len(tops) == 2 and tops[0] == "postscript_audience_lab", tops
assert tops[1].startswith("postscript_audience_lab-") and tops[1].endswith(".dist-info"), tops
assert "site-packages" in postscript_audience_lab.__file__, postscript_audience_lab.__file__
assert "postscript_audience_lab/py.typed" in names
print("wheel top level:", ", ".join(tops))
"""


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site (mkdocs), built with --strict: a broken link or anchor, a page
    missing from the navigation or a reference that no longer generates fails it."""
    session.install(*NEWEST, "-e", ".[docs]")
    quiet = {"DISABLE_MKDOCS_2_WARNING": "true", "NO_MKDOCS_2_WARNING": "1"}  # release notices
    session.run("mkdocs", "build", "--strict", *session.posargs, env=quiet)


@nox.session
def browser(session: nox.Session) -> None:
    """The web inbox in headless Chromium (tests/browser), driven by Selenium through the
    system's chromedriver; skipped, saying what to install, where Chromium is not installed.
    Screenshots are kept in .nox/screenshots."""
    missing = [name for name in ("chromium", "chromedriver") if shutil.which(name) is None]
    if missing:
        session.skip(
            f"{' and '.join(missing)} not on PATH: the browser tests need the system's Chromium "
            "(apt-get install -y chromium chromium-driver); .ci/run installs it where it can"
        )
    session.install(*NEWEST, "-e", ".[test,browser]")
    shots = Path(__file__).resolve().parent / ".nox" / "screenshots"
    session.run(
        "pytest", "-q", "-p", "no:cacheprovider", "tests/browser", *session.posargs,
        env={"PSLAB_SCREENSHOTS": str(shots)},
    )  # fmt: skip


@nox.session
def bench_standard(session: nox.Session) -> None:
    """The standard workload and the million-event stream: `pslab bench --check` (minutes)."""
    session.install("-e", ".")
    session.run("pslab", "bench", "--check", *(session.posargs or ["--preset", "standard"]))


@nox.session
def bench_real(session: nox.Session) -> None:
    """The engine at Postscript's real pace (15/s, 150-350 ms): `pslab bench --pace real`."""
    session.install("-e", ".")
    session.run("pslab", "bench", "--pace", "real", *session.posargs)


@nox.session
def contracts(session: nox.Session) -> None:
    """Only the contracts: replay against the client, verify against the emulator."""
    session.install("-e", ".[test]")
    session.run("pytest", "-q", "tests/contracts")
    session.run("pslab", "contracts", "verify")


@nox.session
def contracts_live(session: nox.Session) -> None:
    """Verify the contracts against a live Postscript shop (skipped without a key)."""
    needed = ("POSTSCRIPT_SECRET_KEY", "POSTSCRIPT_TEST_PHONE")
    missing = [name for name in needed if not os.environ.get(name, "").strip()]
    if missing:
        session.skip(f"set {' and '.join(missing)} to verify the contracts against a live shop")
    session.install("-e", ".")
    # Drift is a report to read (a disagreement does not stop the session); verify decides.
    session.run("pslab", "contracts", "drift", success_codes=[0, 1])
    session.run("pslab", "contracts", "verify", "--live")


@nox.session
def reliability(session: nox.Session) -> None:
    """The long crash and fault suite (500+ kills, every fault kind), then fuzzing at 1,000."""
    session.install("-e", ".[test]")
    session.run(
        "python",
        "-m",
        "postscript_audience_lab.lab.reliability",
        "--crashes",
        "500",
        *session.posargs,
    )
    session.run(
        "pytest",
        "-q",
        "tests/emulator/test_hostile_input.py",
        "tests/emulator/test_hostile_bodies.py",
        "tests/emulator/test_hostile_fuzz.py",
        "tests/sync/test_parse_fuzz.py",
        "tests/sync/test_parse.py",
        "tests/e2e/test_sync_hostile.py",
        env={"PSLAB_FUZZ_EXAMPLES": "1000"},
    )
    # The field's attacks on `pslab serve`: stalled senders and half-open connections, and
    # graceful stops during busy drains, 15 of them (4 in the tests session).
    session.run(
        "pytest",
        "-q",
        "-s",
        "tests/e2e/test_serve_hostile.py",
        "tests/e2e/test_serve.py::test_graceful_stops_during_busy_drains_repeat_no_event",
        env={"PSLAB_STOPS": "15"},
    )
    # `pslab reconcile` killed mid-write and rerun: repeats within the writes in flight.
    session.run(
        "python",
        "-m",
        "postscript_audience_lab.lab.reconcile_crash",
        "--seeds",
        "5",
        "--kills",
        "3",
    )


@nox.session
def fuzz(session: nox.Session) -> None:
    """Every fuzz test (emulator endpoints, the engine's parser) at 300 examples each."""
    session.install("-e", ".[test]")
    session.run(
        "pytest",
        "-q",
        "tests/emulator/test_fuzz.py",
        "tests/emulator/test_hostile_input.py",
        "tests/emulator/test_hostile_bodies.py",
        "tests/emulator/test_hostile_fuzz.py",
        "tests/sync/test_parse_fuzz.py",
        env={"PSLAB_FUZZ_EXAMPLES": "300"},
    )


@nox.session
def bench_serve(session: nox.Session) -> None:
    """`pslab serve`'s intake throughput with the drain off, held to 2,000 events/s
    (docs/design/service.md)."""
    session.install("-e", ".")
    session.run(
        "python", "-m", "postscript_audience_lab.lab.serve_bench", "--check", *session.posargs
    )


@nox.session
def bench_emulator(session: nox.Session) -> None:
    """Loopback load on the emulator's phone lookup with wrk (needs `wrk` on PATH)."""
    session.install("-e", ".")
    session.run(
        "python", "-m", "postscript_audience_lab.emulator.postscript.loadtest", *session.posargs
    )


@nox.session
def speed(session: nox.Session) -> None:
    """Two ratios, side by side in one run: mock_postscript's per-test cost
    against a bare respx route, and the emulator's lookups against bare Starlette + uvicorn."""
    session.install("-e", ".")
    session.run("python", "-m", "postscript_audience_lab.lab.speed", *session.posargs)
