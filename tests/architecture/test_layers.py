"""The layering, read from the code's own imports: core < routing | providers < gateway.

``core`` imports nothing of the project; ``routing`` and ``providers`` import only ``core`` and
themselves; nothing imports ``gateway`` but ``gateway`` (and tests, bench). ``routing`` stays pure:
no module of it imports an I/O library. Imports inside ``if TYPE_CHECKING:`` count too: a type
that points upward is still an upward dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "routing", "providers", "gateway")
ALLOWED = {
    "core": {"core"},
    "routing": {"core", "routing"},
    "providers": {"core", "providers"},
    "gateway": {"core", "routing", "providers", "gateway"},
}
# Libraries that touch the network, the disk or the clock in ways a pure policy must not.
IO_LIBRARIES = {
    "asyncio",
    "aiohttp",
    "httpx",
    "requests",
    "urllib",
    "socket",
    "ssl",
    "sqlite3",
    "sqlalchemy",
    "sqlmodel",
    "asyncpg",
    "aiosqlite",
    "redis",
    "subprocess",
    "threading",
    "multiprocessing",
    "tiktoken",
    "litellm",
    "llama_cpp",
    "os",
    "shutil",
    "tempfile",
    "pathlib",
    "io",
    "logging",
    "time",
    "random",
}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _modules(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "migrations" not in p.parts)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_package_imports_upward(package: str) -> None:
    wrong = []
    for path in _modules(package):
        for line, module in _imports(path):
            top = module.split(".")[0]
            if top in PACKAGES and top not in ALLOWED[package]:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: imports {module}")
    assert not wrong, "imports that point up the layers:\n" + "\n".join(wrong)


def test_routing_imports_no_io_library() -> None:
    wrong = [
        f"{path.relative_to(ROOT)}:{line}: imports {module}"
        for path in _modules("routing")
        for line, module in _imports(path)
        if module.split(".")[0] in IO_LIBRARIES
    ]
    assert not wrong, "routing/ must stay pure:\n" + "\n".join(wrong)


def test_the_contract_sees_a_planted_upward_import(tmp_path: Path) -> None:
    """The check itself can fail: a providers module importing gateway is caught."""
    planted = tmp_path / "bad.py"
    planted.write_text("from gateway.config import GatewayConfig\n")
    assert [m for _, m in _imports(planted) if m.split(".")[0] not in ALLOWED["providers"]] == ["gateway.config"]
