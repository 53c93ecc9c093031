"""The dependency direction of DESIGN.md's layers, and the public surface of API.md.

Reads every module's imports with ``ast``: a runtime module imports only from its own
layer or the ones above it (imports for annotations only are exempt), ``actors`` uses
``runtime`` only through its public names, and nothing imports ``tests`` or ``benchmarks``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import actors
import runtime
import runtime.testing

ROOT = Path(__file__).resolve().parent.parent

# DESIGN.md "Layers": module or package under runtime -> layer number; lower layers sit above.
# The longest name that a module's dotted path starts with decides.
LAYERS = {
    "errors": 1, "limits": 1, "extensions": 1,
    "model": 1, "model.env": 1, "model.ids": 1, "model.codec": 1, "model.request": 1,
    "observability": 1,
    "config": 2, "clock": 2, "durability": 2,
    "storage": 3,
    "model.gates": 4, "model.actor": 4, "model.instance": 4, "model.host": 4, "alarms": 4,
    "model.stubs": 5, "model.remote_errors": 5, "placement": 5, "triggers": 5,
    "http": 6,
    "system": 7, "testing": 7, "cluster": 7,
    "serving": 8,
}  # fmt: skip

API_ACTORS_NAMES = {
    "Queue", "Message", "MessageBatch", "QueueLimitError",
    "execute_idempotent", "IdempotentResult", "IdempotencyActor", "IdempotencyKeyReuseError",
    "update_job_status", "get_job_status", "JobStatusActor",
    "schedule_job", "cancel_job", "list_jobs", "SchedulerActor",
    "enqueue_batch", "process_batch", "BatchResult",
    "with_backoff", "PermanentError", "is_permanent_failure", "verify_stripe_signature",
}  # fmt: skip

API_RUNTIME_NAMES = {
    "Actor", "ActorContext", "AlarmInfo", "Request", "Response", "Namespace", "ActorId",
    "ActorStub", "Storage", "Env", "open_runtime", "load_config", "now",
    "ActorError", "RemoteError", "MethodNotFoundError", "OverloadedError",
    "ActorResetError", "DataCloneError", "StorageError", "StorageLimitError",
}  # fmt: skip


def _imports(path: Path, *, annotations_too: bool = False) -> list[tuple[str, list[str]]]:
    """(absolute module imported, names imported from it) for every import in ``path``; those
    under ``if TYPE_CHECKING:`` only with ``annotations_too``."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    if path.name == "__init__.py":
        package = package.rsplit(".", 1)[0] + ".__init__"
    tree = ast.parse(path.read_text())
    # Imports under ``if TYPE_CHECKING:`` are for annotations only and never run.
    type_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
        for statement in node.body
        for inner in ast.walk(statement)
    }
    out = []
    for node in ast.walk(tree):
        if id(node) in type_only and not annotations_too:
            continue
        if isinstance(node, ast.Import):
            out += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: -node.level]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.append((module, [alias.name for alias in node.names]))
    return out


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "runtime" or len(parts) < 2 or parts[1] == "__init__":
        return None
    for length in range(len(parts) - 1, 0, -1):
        layer = LAYERS.get(".".join(parts[1 : length + 1]))
        if layer is not None:
            return layer
    raise KeyError(f"{module} has no layer in LAYERS")


def _module_name(path: Path) -> str:
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return module.removesuffix(".__init__")


def _import_graph() -> dict[str, set[str]]:
    """Runtime module -> the runtime modules it imports, annotation-only imports included; a
    name imported from a package counts as its module when it is one."""
    modules = {_module_name(path): path for path in (ROOT / "runtime").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = set()
        for imported, names in _imports(path, annotations_too=True):
            if imported == "runtime" or not imported.startswith("runtime"):
                continue
            submodules = {f"{imported}.{name}" for name in names} & modules.keys()
            targets |= submodules or {imported}
        graph[module] = targets - {module}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph``, if it has any (depth-first search)."""
    done: set[str] = set()
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        if module in path:
            return path[path.index(module) :] + [module]
        if module in done:
            return None
        path.append(module)
        for target in sorted(graph.get(module, ())):
            found = visit(target)
            if found:
                return found
        path.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        found = visit(module)
        if found:
            return found
    return None


def test_no_import_circle_in_the_runtime():
    """Annotation-only imports count: a lower piece names a higher one through a protocol."""
    circle = _cycle(_import_graph())
    assert circle is None, " -> ".join(circle or [])


def test_the_cycle_finder_finds_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_every_runtime_module_has_a_layer():
    for path in (ROOT / "runtime").rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        if module != "runtime.__init__":
            assert _layer(module) is not None, module


def test_runtime_modules_import_only_from_their_layer_or_above():
    for path in (ROOT / "runtime").rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        own = _layer(module)
        for imported, names in _imports(path):
            assert not imported.startswith(("actors", "tests", "benchmarks", "examples")), (module, imported)
            if own is None or not imported.startswith("runtime"):
                continue
            targets = [imported] if imported != "runtime" else [f"runtime.{n}" for n in names]
            for target in targets:
                layer = _layer(target)
                assert layer is None or layer <= own, (
                    f"{module} (layer {own}) imports {target} (layer {layer})"
                )


def test_actors_use_only_public_runtime_names():
    for path in (ROOT / "actors").rglob("*.py"):
        for imported, names in _imports(path):
            if imported.startswith("runtime"):
                assert imported == "runtime", f"{path.name} imports {imported}"
                assert set(names) <= set(runtime.__all__), f"{path.name} imports {names}"


def test_nothing_imports_tests_or_benchmarks():
    for top in ("runtime", "actors", "examples"):
        for path in (ROOT / top).rglob("*.py"):
            for imported, _ in _imports(path):
                assert not imported.startswith(("tests", "benchmarks")), (path, imported)


def test_public_surface_is_api_md_sorted():
    assert runtime.__all__ == sorted(runtime.__all__)
    assert set(runtime.__all__) == API_RUNTIME_NAMES
    for name in runtime.__all__:
        assert hasattr(runtime, name)
    assert runtime.testing.__all__ == sorted(runtime.testing.__all__)


def test_actors_surface_holds_every_api_md_name_sorted():
    assert actors.__all__ == sorted(actors.__all__)
    assert set(actors.__all__) >= API_ACTORS_NAMES
    for name in actors.__all__:
        assert hasattr(actors, name)
