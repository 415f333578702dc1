"""The adapter template stands on its own: its pytest settings and its `test` extra
are what a copy outside the repository needs (CI runs that copy: .ci/run)."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parent.parent
TEMPLATE = ROOT / "examples" / "adapter-template"
#: What an adapter author's tests import from predial's kit.
KIT = [
    "__init__.py",
    "_check.py",
    "_contract.py",
    "_fake_crm.py",
    "_http_contracts.py",
    "_recording.py",
    "_serving.py",
]


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


# -- making the template yours ----------------------------------------------------------


def readme_block(name: str) -> str:
    """The bash block after `<!-- setup:NAME -->` in the template's README, as written."""
    text = (TEMPLATE / "README.md").read_text(encoding="utf-8")
    found = re.search(rf"<!-- setup:{name} -->\s*```bash\n(.*?)\n\s*```", text, re.S)
    assert found is not None, f"the template's README has no <!-- setup:{name} --> block"
    return textwrap.dedent(found.group(1))


def test_the_templates_tests_name_the_adapter_once() -> None:
    """The served check takes the adapter's name from the adapter: renaming it there
    is enough (a literal "acme" in the tests was a rename step the README forgot)."""
    tests = (TEMPLATE / "tests" / "test_acme.py").read_text()
    assert "AcmeAdapter.name" in tests
    assert not re.search(r"""["']acme["']""", tests)


def test_the_readmes_rename_makes_a_working_plugin(tmp_path: Path) -> None:
    """The README's rename, run as written in a copy, then the copy installed beside
    this environment: its tests pass and the renamed adapter is what they check."""
    copy = tmp_path / "predial-mycrm"
    shutil.copytree(
        TEMPLATE, copy, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", "*.egg-info")
    )
    subprocess.run(["bash", "-euc", readme_block("rename")], cwd=copy, check=True)
    assert not (copy / "predial_acme").exists()
    project = pyproject(copy)
    assert project["project"]["name"] == "predial-mycrm"
    assert project["project"]["entry-points"]["predial"] == {"mycrm": "predial_mycrm"}
    assert project["tool"]["flit"]["module"]["name"] == "predial_mycrm"
    assert re.search(
        r'^    name = "mycrm"$', (copy / "predial_mycrm" / "__init__.py").read_text(), re.M
    )
    # Installed into a folder of its own (not this environment, which has the
    # template's own predial-acme): the entry point is what the contract looks for.
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-compile",
            "--target",
            str(site),
            str(copy),
        ],
        check=True,
        capture_output=True,
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("PREDIAL_CONFIG", None)
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA"],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert (
        "PASSED tests/test_acme.py::TestAcmeContract::test_discoverable_through_its_entry_point"
        in tests.stdout
    )
    assert "PASSED tests/test_acme.py::test_predial_check_against_the_served_fake" in tests.stdout


def test_a_served_check_that_is_not_a_verdict_fails_with_the_commands_output(
    tmp_path: Path,
) -> None:
    """An adapter no plugin registers: the command's own line in the failure, not
    `assert (2, None) == (0, 'crm')` with the reason left in `.output`."""
    from predial_acme.fake import FakeAcme

    from predial.testing import served_check

    fake = FakeAcme(tokens=["acme-test-key"])
    settings = {"token": "${ACME_API_KEY}"}
    env = {"ACME_API_KEY": "acme-test-key"}
    with (
        served_check(fake, "mycrm", settings, env=env, directory=tmp_path) as check,
        pytest.raises(AssertionError) as failed,
    ):
        check("c-1")
    message = str(failed.value)
    assert "predial check check c-1 (adapter 'mycrm') exited 2:" in message
    assert "unknown adapter 'mycrm'" in message
    assert "acme" in message.split("unknown adapter 'mycrm'", 1)[1]  # what is installed
