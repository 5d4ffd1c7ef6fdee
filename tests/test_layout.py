"""The layout the architecture promises: no import cycles, and production never reaching dev code."""

from __future__ import annotations

import textwrap
import uuid

from tests.support.import_graph import (
    DEV_ONLY_PACKAGES,
    PRODUCTION_PACKAGES,
    cycle_report,
    forbidden_imports,
    project_packages,
)


def test_project_packages_include_every_production_package():
    assert set(PRODUCTION_PACKAGES) <= set(project_packages())


def test_no_import_cycles_among_the_project_modules():
    cycles = cycle_report(project_packages())

    assert not cycles, "import cycles (function-level imports count):\n" + "\n".join(cycles)


def test_production_packages_import_nothing_from_dev_only_code():
    found = forbidden_imports(PRODUCTION_PACKAGES, DEV_ONLY_PACKAGES)

    assert not found, "production code imports dev-only code:\n" + "\n".join(found)


def test_cycle_report_names_a_cycle_made_by_a_function_level_import(tmp_path, monkeypatch):
    name = f"cyclic_{uuid.uuid4().hex[:8]}"
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text(f"from {name} import b\n")
    (package / "b.py").write_text(f"from {name} import c\n")
    (package / "c.py").write_text(
        textwrap.dedent(f"""\
            def late():
                from {name}.a import b
                return b
        """)
    )
    (package / "leaf.py").write_text(f"import {name}.a\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    cycles = cycle_report([name])

    assert len(cycles) == 1
    assert cycles[0].startswith(f"{name}.a -> {name}.b (line 1 of {name}.a) -> {name}.c")
    assert cycles[0].endswith(f"{name}.a (line 2 of {name}.c)")


def test_cycle_report_is_empty_for_an_acyclic_package(tmp_path, monkeypatch):
    name = f"acyclic_{uuid.uuid4().hex[:8]}"
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text(f"from {name} import b\n")
    (package / "b.py").write_text("def late():\n    import json\n    return json\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    assert cycle_report([name]) == []


def test_forbidden_imports_names_the_importing_line(tmp_path, monkeypatch):
    name = f"leaky_{uuid.uuid4().hex[:8]}"
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "views.py").write_text("def page():\n    from tests.support import deadlines\n    return deadlines\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    assert forbidden_imports([name], ["tests"]) == [f"{name}.views line 2: from tests.support import deadlines"]
