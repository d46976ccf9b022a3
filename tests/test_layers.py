"""The import graph, built from the source with ``ast``: every ``import`` and ``from`` of every
file under seqbench/, experiments/ (as seqbench.studies) and hydra_plugins/, function-local
ones too (a local import hides a cycle from import order, not from the reader). Checked
against the layers README.md's "Layout" section declares, bottom to top: no cycle, no import
from a lower layer into a higher one, no study importing another, no module undeclared."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {  # folder -> the module name it is imported as
    ROOT / "seqbench": "seqbench",
    ROOT / "experiments": "seqbench.studies",
    ROOT / "hydra_plugins": "hydra_plugins",
}
LINKS = ("studies", "conf")  # seqbench/studies -> experiments/, seqbench/conf -> conf/
OURS = ("seqbench", "hydra_plugins")
STUDIES = "seqbench.studies"
SHARED = {STUDIES, f"{STUDIES}._common"}  # what a study may import of the studies layer


# --- the declaration ---------------------------------------------------------------------------
def declared_layers(readme: str) -> list[tuple[str, list[str]]]:
    """[(layer, names)] bottom to top: the ``- layer: name, name`` lines that follow "The
    layers, bottom to top" in the Layout section."""
    section = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    listing = section.split("The layers, bottom to top", 1)[1]
    return [
        (m["layer"].strip(), [n.strip() for n in m["names"].split(",") if n.strip()])
        for m in re.finditer(r"^- (?P<layer>[^:\n]+): (?P<names>.+)$", listing, re.M)
    ]


def layer_of(module: str, layers) -> int | None:
    """The index of the module's layer: a module named exactly, then ``*.__main__``, then the
    longest ``package.*`` holding it; None when nothing declares it."""
    best = None  # (specificity, index)
    for index, (_, names) in enumerate(layers):
        for name in names:
            if name == module:
                rank = (3, len(name))
            elif name == "*.__main__" and module.endswith(".__main__"):
                rank = (2, 0)
            elif name.endswith(".*") and (module + ".").startswith(name[:-1]):
                rank = (1, len(name))
            else:
                continue
            if best is None or rank > best[0]:
                best = (rank, index)
    return None if best is None else best[1]


# --- the graph ---------------------------------------------------------------------------------
def source_files() -> dict[str, Path]:
    """module name -> file, for every .py file of the three folders (links not followed)."""
    out = {}
    for folder, name in SOURCES.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder)
            if folder.name == "seqbench" and rel.parts[0] in LINKS:
                continue  # the same files, reached through the link
            if "__pycache__" in rel.parts:
                continue
            parts = [name, *rel.with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def imports_of(module: str, path: Path, modules: set) -> set[str]:
    """The modules of ours that ``path`` imports (``from a import b`` names a.b when b is a
    module, else a)."""
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package this module is in
                package = module.split(".")
                package = package[: len(package) - node.level + is_package]
                base = ".".join(package + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                       for a in node.names]  # fmt: skip
        else:
            continue
        for target in targets:
            while target and target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]  # import a.b.c of module a.b
            if target.split(".")[0] in OURS and target in modules and target != module:
                out.add(target)
    return out


def import_graph() -> dict[str, set[str]]:
    files = source_files()
    return {m: imports_of(m, p, set(files)) for m, p in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each as a cycle
    through them, sorted."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def a_cycle(component: list[str], graph) -> list[str]:
    """One cycle inside a strongly connected component, for the message (a -> b -> a)."""
    inside, path = set(component), [component[0]]
    while True:
        nxt = sorted(graph[path[-1]] & inside)
        step = next((n for n in nxt if n in path), None) or nxt[0]
        if step in path:
            return path[path.index(step) :] + [step]
        path.append(step)


def upward(graph, layers) -> list[str]:
    """Every import from a module into a higher layer, as 'a (layer) -> b (layer)'."""
    out = []
    for module, targets in sorted(graph.items()):
        mine = layer_of(module, layers)
        for target in sorted(targets):
            theirs = layer_of(target, layers)
            if mine is not None and theirs is not None and theirs > mine:
                out.append(f"{module} ({layers[mine][0]}) -> {target} ({layers[theirs][0]})")
    return out


def study_of(module: str) -> str | None:
    parts = module.split(".")
    if module.startswith(STUDIES + ".") and not parts[2].startswith("_"):
        return parts[2]
    return None


def between_studies(graph) -> list[str]:
    """Every import of one study by another (or of a studies module not shared with them)."""
    out = []
    for module, targets in sorted(graph.items()):
        mine = study_of(module)
        if mine is None:
            continue
        for target in sorted(targets):
            if target.startswith(STUDIES) and target not in SHARED and study_of(target) != mine:
                out.append(f"{module} -> {target}")
    return out


# --- the tests ---------------------------------------------------------------------------------
LAYERS = declared_layers((ROOT / "README.md").read_text())
GRAPH = import_graph()


def test_the_readme_declares_the_layers_once_bottom_to_top():
    names = [layer for layer, _ in LAYERS]
    assert len(names) >= 5 and len(set(names)) == len(names), names
    assert names[-1] == "entry", names
    declared = [n for _, ns in LAYERS for n in ns]
    assert len(declared) == len(set(declared)), "a name declared twice"


def test_every_module_is_in_a_declared_layer():
    missing = sorted(m for m in GRAPH if layer_of(m, LAYERS) is None)
    assert not missing, "declare these in README.md's Layout section: " + ", ".join(missing)


def test_there_is_no_import_cycle():
    found = [" -> ".join(a_cycle(c, GRAPH)) for c in cycles(GRAPH)]
    assert not found, "import cycles:\n" + "\n".join(found)


def test_no_module_imports_from_a_higher_layer():
    found = upward(GRAPH, LAYERS)
    assert not found, "imports into a higher layer:\n" + "\n".join(found)


def test_studies_never_import_each_other():
    found = between_studies(GRAPH)
    assert not found, "a study imports another:\n" + "\n".join(found)


def test_the_engine_never_imports_the_entry_layer():
    """The brief's own words, named: train, measure, perf, config and calibrate reach no
    entry module, directly or through others."""
    entry = len(LAYERS) - 1
    for start in ("seqbench.train", "seqbench.measure.run", "seqbench.perf", "seqbench.config"):
        seen, todo = set(), [start]
        while todo:
            for target in GRAPH[todo.pop()] - seen:
                seen.add(target)
                todo.append(target)
        reached = sorted(m for m in seen if layer_of(m, LAYERS) == entry)
        assert not reached, f"{start} reaches the entry layer: {reached}"


# --- the checker finds what it is for (synthetic graphs) --------------------------------------
TOY = [("low", ["a", "pkg.*"]), ("high", ["b", "*.__main__"])]


@pytest.mark.parametrize(
    "module, layer",
    [("a", 0), ("pkg", 0), ("pkg.x.y", 0), ("b", 1), ("pkg.__main__", 1), ("pkgx", None)],
)
def test_the_most_specific_name_decides_the_layer(module, layer):
    assert layer_of(module, TOY) == layer


def test_a_cycle_and_an_upward_import_are_found():
    graph = {"a": {"pkg.x"}, "pkg.x": {"b"}, "b": {"a"}, "pkg.__main__": {"a"}}
    assert cycles(graph) == [["a", "b", "pkg.x"]]
    assert a_cycle(["a", "b", "pkg.x"], graph) == ["a", "pkg.x", "b", "a"]
    assert upward(graph, TOY) == ["pkg.x (low) -> b (high)"]


def test_a_function_local_and_a_relative_import_count(tmp_path):
    path = tmp_path / "__init__.py"
    path.write_text(
        "def f():\n"
        "    from seqbench import cli\n"
        "    from . import sibling\n"
        "    import seqbench.x.y\n"
    )
    modules = {"seqbench.cli", "seqbench.pkg", "seqbench.pkg.sibling", "seqbench.x"}
    assert imports_of("seqbench.pkg", path, modules) == {
        "seqbench.cli",
        "seqbench.pkg.sibling",
        "seqbench.x",
    }


def test_a_study_importing_another_is_found():
    graph = {
        "seqbench.studies.a": {"seqbench.studies._common", "seqbench.studies.b"},
        "seqbench.studies.b.part": {"seqbench.studies.b", "seqbench.studies"},
    }
    assert between_studies(graph) == ["seqbench.studies.a -> seqbench.studies.b"]
