"""Every third-party module stream3d imports is a declared dependency (pyproject.toml)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Imported only on request, with a clear message when missing; declared as an extra.
OPTIONAL = {"xarray", "abtem", "ase"}  # ase, abtem: the bench extra (benchmarks only)
# Modules that ship inside another distribution under a different top-level name.
SHIPPED_WITH = {"mpl_toolkits": "matplotlib"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_modules() -> set[str]:
    found = set()
    for path in (ROOT / "stream3d").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            found |= {n.split(".")[0] for n in names}
    return {m for m in found if m not in sys.stdlib_module_names and m != "stream3d"}


def _declared(requirements: list[str]) -> set[str]:
    names = set()
    for req in requirements:
        m = re.match(r"\s*([A-Za-z0-9_.-]+)(?:\[([^\]]*)\])?", req)
        names.add(_norm(m.group(1)))
        names |= {_norm(e) for e in (m.group(2) or "").split(",") if e.strip()}
    return names


def test_every_imported_package_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = _declared(project["dependencies"])
    extras = _declared([r for reqs in project["optional-dependencies"].values() for r in reqs])
    dists = packages_distributions()
    missing = []
    for module in sorted(_imported_modules()):
        owners = {_norm(d) for d in dists.get(module, [SHIPPED_WITH.get(module, module)])}
        wanted = extras | runtime if module in OPTIONAL else runtime
        if not owners & wanted:
            missing.append(f"{module} (from {', '.join(sorted(owners))})")
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
