"""The shape of the code (issue 15): role names defined once, arrows between packages pointing one way."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: package -> the Carme packages it may import (ARCHITECTURE.md's table; README's architecture section)
MAY_IMPORT = {
    "carme_core": set(),
    "carme_lab": set(),  # runs in the session's container: no hub code
    "carme_slurm": {"carme_core", "slurm_templates"},  # the node scripts (prolog/epilog) are its templates too
    "container_catalog": {"carme_core"},
    "carme_quota": {"carme_core", "carme_slurm"},
    "carme_auth": {"carme_core"},
    "carme_spawner": {"carme_core", "carme_slurm", "container_catalog", "carme_quota", "slurm_templates"},
    "carme_services": {"carme_core", "carme_slurm", "container_catalog", "carme_quota"},
    # the hub's config (jupyterhub_config.py's body, in the wheel): it wires everything together
    "carme_hub": {"carme_core", "carme_slurm", "container_catalog", "carme_quota", "carme_auth", "carme_spawner",
                  "carme_services"},
}
CARME = set(MAY_IMPORT) | {"slurm_templates", "jupyterhub_config"}


def product_files():
    for package in MAY_IMPORT:
        yield from sorted((REPO / package).rglob("*.py"))


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & CARME


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_arrows_point_down_the_table(package):
    for path in sorted((REPO / package).rglob("*.py")):
        wrong = imported_packages(path) - MAY_IMPORT[package] - {package}
        assert not wrong, f"{path.relative_to(REPO)} imports {sorted(wrong)}"


def test_the_role_names_are_defined_in_one_module():
    definition = re.compile(r"""["']user["']\s*,\s*["']power["']\s*,\s*["']admin["']""")
    defining = [str(p.relative_to(REPO)) for p in product_files() if definition.search(p.read_text())]
    defining += ["jupyterhub_config.py"] if definition.search((REPO / "jupyterhub_config.py").read_text()) else []
    assert defining == ["carme_core/roles.py"]


def test_the_config_imports_nothing_of_a_service_but_its_hub_service():
    assert imported_packages(REPO / "jupyterhub_config.py") == {"carme_hub"}  # a thin file: its body is carme_hub
    for path in (REPO / "carme_hub").glob("*.py"):
        text = path.read_text()
        assert "carme_services.reconcile" not in text and "carme_services.catalog" not in text, path
        assert imported_packages(path) <= {"carme_auth", "carme_core", "carme_quota", "carme_slurm", "carme_spawner",
                                           "carme_services", "carme_hub"}, path


def test_no_module_is_far_over_600_lines():
    long = {str(p.relative_to(REPO)): n for p in product_files() if (n := len(p.read_text().splitlines())) > 600}
    assert not long, long


def test_whole_values_are_fullmatched_not_anchored():
    """Issue 16, finding 7: `^...$` with re.match lets a trailing newline through; use fullmatch."""
    anchored = re.compile(r"""re\.(?:compile|match|search)\(\s*r?["']\^[^"']*\$["']""")
    found = [f"{p.relative_to(REPO)}:{n}" for p in product_files()
             for n, line in enumerate(p.read_text().splitlines(), 1) if anchored.search(line)]
    assert not found, found
