"""The adapter template stands on its own: its pytest settings and its `test` extra
are what a copy outside the repository needs (CI runs that copy: .ci/run)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parent.parent
TEMPLATE = ROOT / "examples" / "adapter-template"
#: What an adapter author's tests import from predial's kit.
KIT = ["__init__.py", "check.py", "contract.py", "fake_crm.py", "serving.py"]


def pyproject(folder: Path) -> dict[str, Any]:
    return tomllib.loads((folder / "pyproject.toml").read_text())


def distribution(requirement: str) -> str:
    name = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert name is not None, requirement
    return re.sub(r"[-_.]+", "-", name.group()).lower()


def imported(path: Path) -> Iterator[str]:
    """The top-level names of what `path` imports from outside the standard library
    and predial (at module level or inside a function alike)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top not in sys.stdlib_module_names and top not in {"predial", "predial_acme"}:
                yield top


def test_the_template_carries_predials_pytest_settings() -> None:
    """Plain `pytest` in a copy runs async tests and fails on warnings, as here."""
    root = pyproject(ROOT)["tool"]["pytest"]["ini_options"]
    own = pyproject(TEMPLATE)["tool"]["pytest"]["ini_options"]
    for key in ("asyncio_mode", "asyncio_default_fixture_loop_scope", "filterwarnings"):
        assert own[key] == root[key], key
    assert own["testpaths"] == ["tests"]


def test_the_templates_test_extra_is_the_authors_kit() -> None:
    extras = pyproject(TEMPLATE)["project"]["optional-dependencies"]
    assert extras["test"] == ["predial[testing]"]


def test_the_testing_extra_holds_what_the_kit_and_the_template_import() -> None:
    """A new import in predial.testing's kit or the template that `predial[testing]`
    does not install would fail in an author's venv: caught here first."""
    project = pyproject(ROOT)["project"]
    testing = project["optional-dependencies"]["testing"]
    installed = {distribution(r) for r in [*project["dependencies"], *testing]}
    providers = importlib.metadata.packages_distributions()
    files = [ROOT / "predial" / "testing" / name for name in KIT]
    files += [*TEMPLATE.glob("predial_acme/*.py"), *TEMPLATE.glob("tests/*.py")]
    missing = {
        (path.relative_to(ROOT).as_posix(), top)
        for path in files
        for top in imported(path)
        if not {distribution(d) for d in providers.get(top, [top])} & installed
    }
    assert not missing
    # And not the project's own gates: the point of the extra is a light install.
    assert not {"mypy", "ruff", "openapi-core", "schemathesis"} & {distribution(r) for r in testing}
