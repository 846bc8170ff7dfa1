"""The import graph of router/ and sagemaker_jobs/, read with `ast` (imports at module level, inside
functions and under `if TYPE_CHECKING:` alike): no cycle, and no module importing one from a layer
above its own (LAYERS, bottom first; docs/architecture.md draws them), and every package on one layer
(PACKAGE_EXCEPTIONS aside), so the folders draw the same house. A new module goes into LAYERS.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from fnmatch import fnmatchcase
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("router", "sagemaker_jobs")

# Bottom first. A module may import modules of its own layer or of a lower one, never a higher one.
# Patterns are fnmatch patterns over dotted module names: a module's own name wins over a pattern.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("domain", ("router", "router.domain", "router.errors")),
    ("model", (
        "router.config", "router.jobs", "router.lifecycle", "router.jobs_io", "router.model_versions", "router.auth",
        "router.sagemaker_names", "router.features", "router.kernels",
    )),
    ("ports and pure decisions", (
        "router.ports", "router.routing", "router.calibration", "router.transform_events", "router.advice",
        "router.sagemaker_contract", "router.async_inference",
    )),
    ("adapters", (
        "router.adapters", "router.adapters.*", "router.local.sagemaker_emulator",
        "sagemaker_jobs", "sagemaker_jobs.*",
    )),
    ("services", ("router.service", "router.jobs_service", "router.async_jobs", "router.job_backends", "router.notifications", "router.triggers")),
    ("runtime", ("router.runtime",)),
    ("handlers", ("router.handlers", "router.handlers.*", "router.local", "router.local.*")),
    ("composition roots", ("router.bootstrap", "router.serve_app", "router.lambdas", "router.lambdas.*")),
    ("cli", ("router.cli", "router.cli.*", "router.client")),
)
# Exceptions to LAYERS' order, each with its reason. Keep this empty.
ALLOWED_UP: dict[tuple[str, str], str] = {}
# Modules on another layer than the rest of their package (the folder picture), each with its reason.
PACKAGE_EXCEPTIONS: dict[str, str] = {
    "router.local.sagemaker_emulator": "an adapter of SageMaker (endpoints, batch transform, async) that only router serve wires",
}


def module_files() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a `from ... import` names (`from . import x` resolved against `module`)."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(module: str, path: Path, known: set[str]) -> Iterator[tuple[str, int]]:
    """(imported internal module, line) for every import statement anywhere in the file."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                name = alias.name
                while name and name not in known:  # `import a.b.c` of a non-module attribute path
                    name = name.rpartition(".")[0]
                if name:
                    yield name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in known:  # `from pkg import submodule`
                    yield sub, node.lineno
                elif base in known:
                    yield base, node.lineno


def graph() -> dict[str, dict[str, int]]:
    files = module_files()
    known = set(files)
    edges: dict[str, dict[str, int]] = {m: {} for m in files}
    for module, path in files.items():
        for target, line in imports_of(module, path, known):
            if target != module:
                edges[module].setdefault(target, line)
    return edges


def find_cycle(edges: dict[str, dict[str, int]]) -> list[str] | None:
    """One import cycle (first module repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(edges[m]):
            if state.get(t) == 1:
                return [*stack[stack.index(t):], t]
            if t not in state:
                found = visit(t)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(edges):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def find_cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle per group of modules that import each other (each strongly connected component)."""
    out = []
    remaining = dict(edges)
    while (cycle := find_cycle(remaining)) is not None:
        out.append(cycle)
        members = set(cycle)
        grew = True
        while grew:  # every module on some cycle through these: the whole component
            grew = False
            for m in remaining:
                if m not in members and any(t in members for t in remaining[m]) and _reaches(remaining, members, m):
                    members.add(m)
                    grew = True
        remaining = {m: {t: n for t, n in ts.items() if t not in members} for m, ts in remaining.items() if m not in members}
    return out


def _reaches(edges: dict[str, dict[str, int]], members: set[str], start: str) -> bool:
    """Whether `members` reaches `start` (so `start`, which imports a member, is on a cycle with them)."""
    seen, todo = set(members), [t for m in members for t in edges.get(m, {})]
    while todo:
        m = todo.pop()
        if m == start:
            return True
        if m not in seen:
            seen.add(m)
            todo += list(edges.get(m, {}))
    return False


def layer_of(module: str) -> int | None:
    for i, (_, patterns) in enumerate(LAYERS):
        if module in patterns:
            return i
    for i, (_, patterns) in enumerate(LAYERS):
        if any(fnmatchcase(module, p) for p in patterns):
            return i
    return None


def test_import_graph_has_no_cycle() -> None:
    edges = graph()
    cycles = find_cycles(edges)
    shown = ["\n  ".join(f"{a} (line {edges[a][b]}) -> {b}" for a, b in zip(c, c[1:], strict=False)) for c in cycles]
    assert not cycles, f"{len(cycles)} import cycle(s):\n  " + "\n\n  ".join(shown)


def test_every_module_has_a_layer() -> None:
    missing = sorted(m for m in graph() if layer_of(m) is None)
    assert not missing, f"add these modules to LAYERS in {Path(__file__).name}: {missing}"


def test_no_module_imports_a_higher_layer() -> None:
    up = []
    for src, targets in graph().items():
        ls = layer_of(src)
        for dst, line in targets.items():
            ld = layer_of(dst)
            if ls is None or ld is None or ld <= ls or (src, dst) in ALLOWED_UP:
                continue
            up.append(f"{src} (layer {LAYERS[ls][0]!r}, line {line}) imports {dst} (layer {LAYERS[ld][0]!r}, above it)")
    assert not up, "imports running up the layers:\n  " + "\n  ".join(sorted(up))


def packages(modules: set[str]) -> dict[str, list[str]]:
    """Each package below the top of `router` (and `sagemaker_jobs`): itself and every module under it."""
    pkgs = {m for m in modules if m != "router" and any(o.startswith(m + ".") for o in modules)}
    return {p: sorted(m for m in modules if m == p or m.startswith(p + ".")) for p in sorted(pkgs)}


def test_every_package_sits_on_one_layer() -> None:
    """Seen by folder, the house is the same: a package's modules share one layer (PACKAGE_EXCEPTIONS
    aside), so a package never imports one above it while its modules each look in order."""
    mixed = []
    for pkg, members in packages(set(graph())).items():
        layers: dict[int | None, list[str]] = {}
        for m in members:
            if m not in PACKAGE_EXCEPTIONS:
                layers.setdefault(layer_of(m), []).append(m)
        if len(layers) > 1:
            mixed.append(f"{pkg}: " + "; ".join(
                f"{LAYERS[i][0] if i is not None else '(none)'!r}: {', '.join(ms)}" for i, ms in layers.items()))
    assert not mixed, "packages spread over layers (move the module, or list it in PACKAGE_EXCEPTIONS with why):\n  " + "\n  ".join(mixed)
    stale = sorted(set(PACKAGE_EXCEPTIONS) - set(graph()))
    assert not stale, f"PACKAGE_EXCEPTIONS lists modules that do not exist: {stale}"


def test_no_module_under_local_or_handlers_imports_a_composition_root() -> None:
    edges = graph()
    top = [name for name, _ in LAYERS].index("composition roots")
    found = sorted(f"{m} imports {t}" for m, ts in edges.items() if m.startswith(("router.local.", "router.handlers."))
                   for t in ts if (layer_of(t) or 0) >= top)
    assert not found, "router serve's and the Lambdas' parts importing a composition root:\n  " + "\n  ".join(found)


def _private(name: str) -> bool:
    return name.startswith("_") and not name.endswith("__")


def test_no_module_uses_another_modules_private_name() -> None:
    """Neither `from m import _name` nor `m._name` on an imported module `m`."""
    files = module_files()
    known = set(files)
    found = []
    for module, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        aliases: dict[str, str] = {}  # local name -> internal module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = _resolve(module, path.name == "__init__.py", node)
                if base.split(".")[0] not in PACKAGES or base == module:
                    continue
                found += [f"{module} (line {node.lineno}) imports {base}.{a.name}" for a in node.names
                          if _private(a.name) and f"{base}.{a.name}" not in known]
                aliases.update({a.asname or a.name: f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known})
            elif isinstance(node, ast.Import):
                aliases.update({a.asname: a.name for a in node.names if a.asname and a.name in known})
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and _private(node.attr) and isinstance(node.value, ast.Name)
                    and aliases.get(node.value.id, module) != module):
                found.append(f"{module} (line {node.lineno}) uses {aliases[node.value.id]}.{node.attr}")
    assert not found, "private names used outside their module:\n  " + "\n  ".join(found)


def test_the_checker_sees_function_level_relative_and_dotted_imports(tmp_path: Path) -> None:
    """The parser itself: a cycle made of a function-level `from . import` and an `import a.b`."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from . import b\n    return b\n")
    (pkg / "b.py").write_text("import pkg.a\n")
    known = {"pkg", "pkg.a", "pkg.b"}
    edges = {m: dict(imports_of(m, pkg / (m.split(".")[-1] + ".py"), known)) for m in ("pkg.a", "pkg.b")}
    edges["pkg"] = {}
    assert edges["pkg.a"] == {"pkg.b": 2}
    assert edges["pkg.b"] == {"pkg.a": 1}
    assert find_cycle(edges) == ["pkg.a", "pkg.b", "pkg.a"]


def test_handlers_reach_services_not_adapters() -> None:
    """Handlers parse, call a service of their runtime and render: no adapter, and a typed runtime."""
    edges = graph()
    reach = sorted(f"{m} imports {t}" for m, ts in edges.items() if m.startswith("router.handlers")
                   for t in ts if t.startswith("router.adapters"))
    assert not reach, "handlers importing adapters:\n  " + "\n  ".join(reach)
    untyped = []
    for module, path in module_files().items():
        if not module.startswith(("router.handlers", "router.lambdas")):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for arg in [*node.args.args, *node.args.kwonlyargs]:
                    if arg.arg == "runtime" and (arg.annotation is None or ast.unparse(arg.annotation) in ("Any", "object")):
                        untyped.append(f"{module}.{node.name} (line {node.lineno})")
    assert not untyped, "handlers taking an untyped runtime: " + ", ".join(untyped)


def test_the_checker_reports_every_cycle() -> None:
    edges = {"a": {"b": 1}, "b": {"a": 1, "c": 1}, "c": {"d": 1}, "d": {"c": 1, "e": 1}, "e": {"c": 1}, "f": {"a": 1}}
    assert find_cycles(edges) == [["a", "b", "a"], ["c", "d", "c"]]
    assert find_cycles({"a": {"b": 1}, "b": {}}) == []
