"""The shape of the project: what each package exports, and which package may import which.

- `emulator` is the fake outside world (Postscript, Segment): it knows nothing of
  the engine, the lab or the contract harness;
- `sync` is the engine: it runs against any Postscript, so it imports none of the others;
- `contracts` checks the emulator (and the engine's client, in tests);
- `lab` wires them all together.

Dependencies between the top-level packages must form no cycle, and the commands
that do not need the emulator's web stack or the test libraries must not load them.
"""

from __future__ import annotations

import ast
import graphlib
import importlib
import os
import pkgutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "postscript_audience_lab"  # the one import package; its parts are named below
PACKAGES = ("emulator", "sync", "contracts", "lab")
# Where each part's source lives: the top-level folders, and the lab inside the package.
FOLDERS = {
    "emulator": "emulator",
    "sync": "sync",
    "contracts": "contracts",
    "lab": f"{PACKAGE}/lab",
}

# The package's own modules beside its parts: leaves every part may import (`jsontext`).
ROOT_MODULES = sorted((ROOT / PACKAGE).glob("*.py"))

# Exported names by module, named below the package (`sync` is postscript_audience_lab.sync).
EXPORTS: dict[str, set[str]] = {
    PACKAGE: set(),
    "sync": {"Engine", "PostscriptError", "Report", "Settings", "SyncError"},
    "contracts": {"RECORDED", "Contract", "load_contracts"},
    "lab": set(),
    "emulator": set(),
    "emulator.postscript": set(),
    "emulator.segment": set(),
    "emulator.testing": {
        "POSTSCRIPT_API",
        "ApiRequest",
        "DeliveryAttempt",
        "EmulatorAdminError",
        "Event",
        "Faults",
        "InboundText",
        "Keyword",
        "Message",
        "MessageRequest",
        "Postscript",
        "PostscriptMock",
        "RealPostscriptBlocked",
        "Subscriber",
        "SubscriberSeed",
        "UnroutedRequest",
        "WebhookDelivery",
        "mock_postscript",
        "serve_postscript",
    },
}

# What each folder must not import; `lab`, the wiring, may import them all.
FORBIDDEN_IMPORTS: dict[str, set[str]] = {
    "emulator/postscript": {"sync", "lab", "contracts"},
    "emulator/segment": {"sync", "lab", "contracts"},
    "emulator/testing": {"sync", "lab", "contracts"},
    "sync": {"emulator", "lab", "contracts"},
}

HELP_PROBE = (
    "import sys; sys.argv=['pslab',{command!r},'--help']\n"
    "from postscript_audience_lab.lab.cli import main\n"
    "try:\n"
    "    main()\n"
    "except SystemExit:\n"
    "    pass\n"
    "print(sorted(m for m in ('uvicorn','respx','hypothesis','starlette','responses',"
    "'aioresponses') if m in sys.modules))"
)


def module_name(path: Path) -> str:
    """The name a source file is imported by: `emulator/segment/events.py` is
    `postscript_audience_lab.emulator.segment.events`."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[0] != PACKAGE:
        parts = (PACKAGE, *parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_files(folder: str) -> list[Path]:
    """The sources of a part (`sync`) or of a folder below one (`emulator/testing`)."""
    part, _, below = folder.partition("/")
    return sorted((ROOT / FOLDERS[part] / below).rglob("*.py"))


def part_of(module: str) -> str:
    """The part a module belongs to (`sync` for `postscript_audience_lab.sync.ledger`), or
    the top-level name of a module from elsewhere (`json`)."""
    first, _, rest = module.partition(".")
    return rest.partition(".")[0] if first == PACKAGE and rest else first


def imported_modules(source: str, package: str) -> Iterator[str]:
    """Every module `source` imports, at the top or inside a function (relative ones resolved).

    `package` is the package the source's relative imports start from.
    """
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            yield ".".join(part for part in (base, node.module or "") if part)


def top_level_imports(path: Path) -> set[str]:
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    source = path.read_text(encoding="utf-8")
    return {part_of(imported) for imported in imported_modules(source, package)}


def public_modules() -> list[str]:
    """Every module of the four packages, except `__main__` (importing it runs `pslab`)."""
    names = [PACKAGE]
    names += [f"{PACKAGE}.{path.stem}" for path in ROOT_MODULES if path.stem[0] != "_"]
    for part in PACKAGES:
        package = f"{PACKAGE}.{part}"
        names.append(package)
        found = pkgutil.walk_packages(importlib.import_module(package).__path__, package + ".")
        names.extend(info.name for info in found if not info.name.endswith(".__main__"))
    return sorted(names)


def defines_all(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    targets = [
        target
        for node in tree.body
        if isinstance(node, ast.Assign | ast.AnnAssign)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
    ]
    return any(isinstance(target, ast.Name) and target.id == "__all__" for target in targets)


# -- exported names -------------------------------------------------------------


@pytest.mark.parametrize("package", sorted(EXPORTS))
def test_each_package_exports_exactly_its_main_names(package: str) -> None:
    name = package if package == PACKAGE else f"{PACKAGE}.{package}"
    exported = getattr(importlib.import_module(name), "__all__", None)
    assert exported is not None, f"{package} defines no __all__"
    assert set(exported) == EXPORTS[package]


@pytest.mark.parametrize("name", public_modules())
def test_every_name_a_module_exports_exists_and_is_public(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(getattr(module, "__all__", []))
    assert len(exported) == len(set(exported)), f"{name}.__all__ lists a name twice"
    assert [item for item in exported if not hasattr(module, item)] == []
    assert [item for item in exported if item.startswith("_")] == []


@pytest.mark.parametrize(
    "path",
    [*ROOT_MODULES, *(path for part in PACKAGES for path in source_files(part))],
    ids=lambda path: module_name(path),
)
def test_every_module_says_what_it_exports(path: Path) -> None:
    assert defines_all(path), f"{module_name(path)} has no __all__"


# -- who imports whom -----------------------------------------------------------


@pytest.mark.parametrize("folder", sorted(FORBIDDEN_IMPORTS))
def test_a_package_imports_none_of_the_packages_above_it(folder: str) -> None:
    crossings = {
        module_name(path): sorted(top_level_imports(path) & FORBIDDEN_IMPORTS[folder])
        for path in source_files(folder)
    }
    assert {module: found for module, found in crossings.items() if found} == {}


# Libraries a front end uses: the engine's core, which a library user or `pslab sync` loads,
# and the emulator's model, which any server could carry, import none of them.
WEB_AND_COMMAND_LINE = {"typer", "click", "rich", "starlette", "uvicorn", "prometheus_client"}
INNER_LAYERS = {
    # the engine's core (sync/ and the ledger) -> its front ends and their libraries
    "sync": {f"{PACKAGE}.sync.commands", f"{PACKAGE}.sync.service"},
    # the emulator's model -> its HTTP layer and the document describing it
    "emulator/postscript/model": {
        f"{PACKAGE}.emulator.postscript.web",
        f"{PACKAGE}.emulator.postscript.openapi",
    },
}


def inner_layer_files(folder: str) -> list[Path]:
    """The folder's modules, without its front-end subpackages (for `sync`: its core)."""
    below = ROOT / folder
    if folder == "sync":
        return [
            path for path in source_files("sync") if path.parent.name not in ("commands", "service")
        ]
    return sorted(below.rglob("*.py"))


@pytest.mark.parametrize("folder", sorted(INNER_LAYERS))
def test_an_inner_layer_imports_no_front_end_nor_a_web_or_command_line_library(
    folder: str,
) -> None:
    files = inner_layer_files(folder)
    assert len(files) > 5, f"{folder} has its modules"
    crossings = {}
    for path in files:
        name = module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        imported = set(imported_modules(path.read_text(encoding="utf-8"), package))
        wrong = {
            module
            for module in imported
            if module.split(".")[0] in WEB_AND_COMMAND_LINE
            or any(
                module == outer or module.startswith(outer + ".") for outer in INNER_LAYERS[folder]
            )
        }
        if wrong:
            crossings[name] = sorted(wrong)
    assert crossings == {}


def test_the_packages_own_modules_import_none_of_its_parts() -> None:
    """`jsontext` and its kind are leaves: the emulator and the engine both use them."""
    leaves = [path for path in ROOT_MODULES if path.stem not in ("__init__", "__main__")]
    assert leaves, "the package has leaf modules (jsontext)"
    crossings = {
        module_name(path): sorted(top_level_imports(path) & set(PACKAGES)) for path in leaves
    }
    assert {module: found for module, found in crossings.items() if found} == {}


def test_the_top_level_packages_depend_on_each_other_without_a_cycle() -> None:
    graph = {
        package: {
            imported
            for path in source_files(package)
            for imported in top_level_imports(path)
            if imported in PACKAGES and imported != package
        }
        for package in PACKAGES
    }
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as cycle:
        pytest.fail(f"the packages import each other in a cycle: {cycle.args[1]} ({graph})")


def test_only_the_ledger_runs_sql_on_the_state_file() -> None:
    ledger = ROOT / FOLDERS["sync"] / "ledger"  # the package: its modules share the file
    scratch = ROOT / FOLDERS["sync"] / "scratch.py"  # a run's private temporary database
    sql_calls = {"execute", "executemany", "executescript", "connect", "backup"}
    outside = {
        module_name(path): sorted(
            node.func.attr
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in sql_calls
        )
        for path in source_files("sync")
        if ledger not in path.parents and path != scratch
    }
    assert {module: calls for module, calls in outside.items() if calls} == {}


# No Python source longer than this: past it, a file is split by concern.
MAX_LINES = 600
SOURCE_FOLDERS = (PACKAGE, "emulator", "sync", "contracts", "tests", "examples")


def python_sources() -> list[Path]:
    """Every Python source of the repository: the package and its parts' folders (each file
    once, though the package reaches the parts through symlinks), the tests, the examples,
    noxfile.py and docs/*.py; nothing under a hidden folder (a virtualenv, caches)."""
    found = {path.resolve() for folder in SOURCE_FOLDERS for path in (ROOT / folder).rglob("*.py")}
    found |= {path.resolve() for path in [ROOT / "noxfile.py", *(ROOT / "docs").glob("*.py")]}
    return sorted(
        path
        for path in found
        if not any(part.startswith(".") for part in path.relative_to(ROOT).parts)
    )


def test_no_python_source_is_over_600_lines() -> None:
    lines = {
        path.relative_to(ROOT).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for path in python_sources()
    }
    assert {"noxfile.py", "sync/engine.py", "tests/test_architecture.py"} <= set(lines)
    too_long = {name: count for name, count in lines.items() if count > MAX_LINES}
    assert too_long == {}, f"over {MAX_LINES} lines, split by concern: {too_long}"


def test_the_scratch_database_opens_nothing_but_a_private_temporary_one() -> None:
    tree = ast.parse((ROOT / FOLDERS["sync"] / "scratch.py").read_text(encoding="utf-8"))
    opened = [
        ast.literal_eval(node.args[0]) if node.args else None
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("connect", "backup")
    ]
    assert opened == [""]  # SQLite's own temporary file: never a path, never the state file


def test_the_import_walk_sees_late_typing_only_and_relative_imports() -> None:
    source = (
        "import json\n"
        "if TYPE_CHECKING:\n"
        "    from postscript_audience_lab.sync.ledger import Ledger\n"
        "def late():\n"
        "    import postscript_audience_lab.lab.cli\n"
        "    from ..segment import events\n"
        "    from . import store\n"
    )
    assert set(imported_modules(source, "postscript_audience_lab.emulator.postscript")) == {
        "json",
        "postscript_audience_lab.sync.ledger",
        "postscript_audience_lab.lab.cli",
        "postscript_audience_lab.emulator.segment",
        "postscript_audience_lab.emulator.postscript",
    }


# -- what a command loads -------------------------------------------------------


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "FORCE_COLOR"}
    env |= {"NO_COLOR": "1", "COLUMNS": "120"}
    return subprocess.run(  # noqa: S603 -- our own interpreter and script
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("command", "unwanted", "mentioned"),
    [
        (
            "sync",
            {"uvicorn", "respx", "hypothesis", "starlette", "responses", "aioresponses"},
            "--state",
        ),
        (
            "reconcile",
            {"uvicorn", "respx", "hypothesis", "starlette", "responses", "aioresponses"},
            "--snapshot",
        ),
        ("contracts", {"respx", "hypothesis", "responses", "aioresponses"}, "verify"),
    ],
)
def test_a_command_help_loads_no_web_stack_or_test_library_it_does_not_need(
    command: str, unwanted: set[str], mentioned: str
) -> None:
    result = run_python(HELP_PROBE.format(command=command))
    assert result.returncode == 0, result.stderr
    *help_lines, loaded_line = result.stdout.strip().splitlines()
    loaded = set(ast.literal_eval(loaded_line))
    assert loaded & unwanted == set()
    assert mentioned in "\n".join(help_lines)


def test_contracts_verify_runs_without_the_test_libraries() -> None:
    blocked = (
        "import sys\n"
        "sys.modules['respx'] = sys.modules['hypothesis'] = None  # importing them now fails\n"
        "sys.argv = ['pslab', 'contracts', 'verify']\n"
        "from postscript_audience_lab.lab.cli import main\n"
        "main()\n"
    )
    result = run_python(blocked)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 differ" in result.stdout
