"""The package's layers, read from its imports: nothing imports from a layer above its own.

Lowest first (the README's layout section draws the same picture):

0. foundation: ``relay.schema``, ``relay.channels``, ``relay.errors`` (what every part shares)
1. ``relay.core``: plumbing below the providers (publisher, Redis link, metrics, observers, ...)
2. ``relay.providers.<name>``, one provider each, and the consumer side (``relay.client``, the
   package's public API in ``relay/__init__.py``)
3. ``relay.server``: the composition root (settings, app factory, uvicorn)
4. ``relay.dev``: development doubles (simulator, emulators, embedded servers, local Redis)
5. ``relay.tools``: programs (cli, tail, demo, doc generators)

Two more rules: a provider never imports another provider (a bridge sees other providers' events
through the schema), and the consumer side uses nothing of ``relay.core`` but its backoff.
Every import counts, at module level or inside a function, ``TYPE_CHECKING`` included.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "relay"

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("relay.schema", "relay.channels", "relay.errors")),
    ("core", ("relay.core",)),
    ("providers and consumers", ("relay.providers", "relay.client", "relay")),
    ("server", ("relay.server",)),
    ("dev", ("relay.dev",)),
    ("tools", ("relay.tools",)),
]
#: What the consumer side may take from relay.core (it must stay light: tests/test_client_light.py).
CONSUMER_CORE = frozenset({"relay.core.backoff"})


def layer(module: str) -> int:
    """The rank of ``module``: the layer whose longest prefix names it."""
    best: tuple[int, int] | None = None
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[0]:
                    best = (len(prefix), rank)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS and to the README's layout")
    return best[1]


def provider(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "providers" else None


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(module: str, source: str, *, is_package: bool = False) -> list[Import]:
    """Every ``relay`` module that ``source`` (the text of ``module``) imports."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing package
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                parent = ".".join([*base, *([node.module] if node.module else [])])
            else:
                parent = node.module or ""
            # ``from relay.dev import recall_frames`` imports the module relay.dev.recall_frames
            names = [parent] + [f"{parent}.{alias.name}" for alias in node.names if _is_module(f"{parent}.{alias.name}")]
        else:
            continue
        found.extend(Import(module, name, node.lineno) for name in names if name == "relay" or name.startswith("relay."))
    return found


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def all_imports() -> list[Import]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        found.extend(imports_of(module_name(path), path.read_text(), is_package=path.name == "__init__.py"))
    return found


def violations(imports: list[Import]) -> list[str]:
    bad = []
    for imp in imports:
        if imp.imported == "relay" and imp.importer != "relay":
            continue  # the package itself: its __init__ is the public API, importing it is harmless
        low, high = layer(imp.imported), layer(imp.importer)
        where = f"{imp.importer}:{imp.line} imports {imp.imported}"
        if low > high:
            bad.append(f"{where}: {LAYERS[low][0]} is above {LAYERS[high][0]}")
        theirs, ours = provider(imp.imported), provider(imp.importer)
        if theirs and ours and theirs != ours:
            bad.append(f"{where}: one provider importing another")
        consumer = imp.importer == "relay" or imp.importer == "relay.client" or imp.importer.startswith("relay.client.")
        if consumer and layer(imp.imported) == 1 and imp.imported not in CONSUMER_CORE and imp.imported != "relay.core":
            bad.append(f"{where}: the consumer side takes only {sorted(CONSUMER_CORE)} from relay.core")
        if consumer and provider(imp.imported):
            bad.append(f"{where}: the consumer side imports no provider")
    return bad


def test_every_module_is_in_a_layer() -> None:
    for path in PACKAGE.rglob("*.py"):
        layer(module_name(path))


def test_no_import_runs_from_a_lower_layer_to_a_higher_one() -> None:
    imports = all_imports()
    assert len(imports) > 100, "the import reader found too little: it is broken"
    assert violations(imports) == []


@pytest.mark.parametrize(
    ("importer", "source", "complaint"),
    [
        ("relay.core.publisher", "from relay.server.settings import Settings", "server is above core"),
        ("relay.providers.asapp.bridge", "import relay.providers.recall.parse", "one provider importing another"),
        ("relay.schema", "def f():\n    from relay.core import metrics", "core is above foundation"),
        ("relay.server.app", "from relay.dev import local_redis", "dev is above server"),
        ("relay.client", "from relay.core.publisher import EventPublisher", "the consumer side takes only"),
        ("relay.client.live", "from relay.core.metrics import RelayMetrics", "the consumer side takes only"),
        ("relay.client", "from relay.providers.recall import parse", "the consumer side imports no provider"),
        ("relay.core.publisher", "from ..server import app", "server is above core"),
    ],
)
def test_the_checker_catches_a_bad_import(importer: str, source: str, complaint: str) -> None:
    found = violations(imports_of(importer, source))
    assert any(complaint in v for v in found), found


def test_allowed_imports_pass() -> None:
    allowed = [
        ("relay.tools.demo", "from relay.dev.asapp_emulator import AsappEmulator"),
        ("relay.server.app", "from relay.providers.asapp.bridge import AsappBridge"),
        ("relay.client", "from relay.core.backoff import Backoff"),
        ("relay.providers.asapp.stream", "from relay.providers.asapp.parse import parse"),
    ]
    for importer, source in allowed:
        assert violations(imports_of(importer, source)) == []
