"""Every check CI runs, by name. Plain `nox` runs the default sessions."""

from __future__ import annotations

import os

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "typecheck", "tests", "contracts", "bench"]

SOURCES = ["emulator", "sync", "contracts", "lab", "tests", "noxfile.py"]


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", *SOURCES)
    session.run("ruff", "format", "--check", *SOURCES)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the packages and the tests."""
    session.install("-e", ".[dev]")
    session.run("mypy", "--strict")


@nox.session
def tests(session: nox.Session) -> None:
    """Unit, property and end-to-end tests (pytest)."""
    session.install("-e", ".[test]")
    session.run("pytest", "-q", *session.posargs)


@nox.session
def contracts(session: nox.Session) -> None:
    """Replay the contracts against the client and verify them against the emulator."""
    session.install("-e", ".[test]")
    session.run("pytest", "-q", "tests/contracts")
    session.run("pslab", "contracts", "verify")


@nox.session
def contracts_live(session: nox.Session) -> None:
    """Verify the contracts against a live Postscript shop (needs a key)."""
    needed = ("POSTSCRIPT_SECRET_KEY", "POSTSCRIPT_TEST_PHONE")
    missing = [name for name in needed if not os.environ.get(name, "").strip()]
    if missing:
        session.skip(f"set {' and '.join(missing)} to verify the contracts against a live shop")
    session.install("-e", ".")
    # Drift is a report to read (a disagreement does not stop the session); verify decides.
    session.run("pslab", "contracts", "drift", success_codes=[0, 1])
    session.run("pslab", "contracts", "verify", "--live")


@nox.session
def fuzz(session: nox.Session) -> None:
    """Schemathesis against the emulator's OpenAPI document (longer than the test in `tests`)."""
    session.install("-e", ".[test]")
    session.run("pytest", "-q", "tests/emulator/test_fuzz.py", env={"PSLAB_FUZZ_EXAMPLES": "300"})


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmark of SPEC §9; `nox -s bench -- --preset standard` for the full workload."""
    session.install("-e", ".")
    args = session.posargs or ["--preset", "quick"]
    session.run("pslab", "bench", "--check", *args)


@nox.session
def bench_emulator(session: nox.Session) -> None:
    """Loopback load on the emulator's phone lookup (needs `wrk` on PATH)."""
    session.install("-e", ".")
    session.run("python", "-m", "emulator.postscript.loadtest", *session.posargs)
