"""The package's layout rules (ARCHITECTURE.md): its modules import only their own layer or
layers below, and nothing imports in a cycle. Read from the source, so a new module is held
to them the day it is written."""
import ast
from pathlib import Path

import tryon

ROOT = Path(tryon.__file__).parent
# Lowest first. A module may import from its own layer and the layers below, never above.
LAYERS = (
    {"errors", "cpu", "files", "timing", "examples"},  # facts and helpers any part may use
    {"images", "options", "sheet"},  # pictures in and out, and the try-on's options
    {"models"},  # the exported models, their manifest, the sessions that run them
    {"stages"},  # the steps of a try-on
    {"parsed_person", "store"},  # a parsed person and where it is kept
    {"pipeline"},  # TryOn: parse and dress
    {"ray_cluster", "bench", "catalogue"},  # what runs pipelines: benchmarks, catalogues
    {"serve"},  # the web service and its engines
    {"cli"},  # the command line over all of it
    {""},  # the package itself: the public API
)
TOP_LEVEL_MODULES_AT_MOST = 12


def layer(module: str) -> int:
    head = module.split(".")[0]
    return next(i for i, names in enumerate(LAYERS) if head in names)


def modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(module: str, path: Path) -> set[str]:
    """The modules of this package that `module` imports, anywhere in its code."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    known, found = modules(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                base = parts[:len(parts) - (node.level - 1)] if node.level > 1 else parts
                target = ".".join(base + (node.module.split(".") if node.module else []))
            elif node.module and (node.module == "tryon" or node.module.startswith("tryon.")):
                target = node.module[len("tryon."):] if node.module != "tryon" else ""
            else:
                continue
            for alias in node.names:  # `from . import common`: the module common, not the package
                sub = f"{target}.{alias.name}" if target else alias.name
                found.add(sub if sub in known else target)
        elif isinstance(node, ast.Import):
            found.update(a.name[len("tryon."):] for a in node.names if a.name.startswith("tryon."))
    return {name for name in found if name in known and not name.startswith("export")} - {module}


def test_no_module_imports_from_a_layer_above_its_own():
    upward = [f"{module} (layer {layer(module)}) imports {target} (layer {layer(target)})"
              for module, path in modules().items() for target in imports(module, path)
              if layer(target) > layer(module)]
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    graph = {module: imports(module, path) for module, path in modules().items()}
    state, cycles = {}, []

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(cycles)


def test_the_top_level_holds_what_a_user_reads_first():
    top = sorted(p.stem for p in ROOT.glob("*.py"))
    assert len(top) <= TOP_LEVEL_MODULES_AT_MOST, top
    assert all(any(p.name in names for names in LAYERS) for p in ROOT.iterdir()
               if p.is_dir() and (p / "__init__.py").exists())


def test_the_rules_see_every_module_and_would_catch_a_violation(tmp_path):
    assert {"pipeline", "stages.parse", "store", "serve.app", "cli"} <= set(modules())
    assert "stages.parse" in imports("pipeline", modules()["pipeline"])
    assert "models.graphs" in imports("stages.parse", modules()["stages.parse"])
    assert layer("serve.app") > layer("pipeline") > layer("stages.parse") > layer("models.session")
