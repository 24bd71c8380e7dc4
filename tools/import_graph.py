"""Import cycles inside cpt_jax: `python tools/import_graph.py [--all] [--local]`.

Builds the module graph from every import statement in cpt_jax/ (function-level ones included, since a
lazy import only hides a cycle; imports under `if TYPE_CHECKING:` are skipped, they never run), prints each
cycle and exits 1 if there is any. `--all` prints the whole graph; `--local` lists the function-level
imports, which are meant only for optional or heavy dependencies.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "cpt_jax"


def module_name(path: Path) -> str:
  parts = list(path.relative_to(ROOT).with_suffix("").parts)
  if parts[-1] == "__init__":
    parts.pop()
  return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
  return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
      isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
  """(node, inside_function) for each import that runs, walking the tree with its function nesting."""
  stack = [(tree, False)]
  while stack:
    node, in_func = stack.pop()
    if isinstance(node, ast.If) and _is_type_checking(node.test):
      stack.extend((child, in_func) for child in node.orelse)
      continue
    if isinstance(node, (ast.Import, ast.ImportFrom)):
      yield node, in_func
    nested = in_func or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
    stack.extend((child, nested) for child in ast.iter_child_nodes(node))


def build_graph() -> tuple[dict[str, set[str]], dict[str, list[tuple[str, int, str]]]]:
  """Edges between cpt_jax modules, and each module's function-level imports (line, imported name)."""
  files = {module_name(p): p for p in sorted((ROOT / PACKAGE).rglob("*.py"))}
  graph: dict[str, set[str]] = {m: set() for m in files}
  local: dict[str, list[tuple[str, int, str]]] = {}
  for mod, path in files.items():
    is_pkg = path.name == "__init__.py"
    tree = ast.parse(path.read_text(), str(path))
    for node, in_func in _imports(tree):
      if isinstance(node, ast.Import):
        targets = [a.name for a in node.names]
      else:
        base = node.module or ""
        if node.level:
          anchor = mod.split(".")[:len(mod.split(".")) - node.level + (1 if is_pkg else 0)]
          base = ".".join(anchor + ([base] if base else []))
        # `from pkg import sub` imports the submodule when there is one, else a name of pkg.
        targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
      for t in targets:
        if in_func:
          local.setdefault(mod, []).append((str(path.relative_to(ROOT)), node.lineno, t))
        if t in files and t != mod:
          graph[mod].add(t)
  return graph, local


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """Strongly connected components with more than one module (Tarjan), each as a sorted list."""
  index: dict[str, int] = {}
  low: dict[str, int] = {}
  on_stack: set[str] = set()
  stack: list[str] = []
  out: list[list[str]] = []
  counter = [0]

  def visit(v: str) -> None:
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph[v]):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      comp = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        comp.append(w)
        if w == v:
          break
      if len(comp) > 1:
        out.append(sorted(comp))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return out


def cycle_path(graph: dict[str, set[str]], comp: list[str]) -> list[str]:
  """One concrete cycle through the component's first module (breadth-first, so a shortest one)."""
  start, members = comp[0], set(comp)
  prev: dict[str, str] = {}
  frontier = [start]
  while frontier:
    nxt = []
    for v in frontier:
      for w in sorted(graph[v] & members):
        if w == start:
          path = [v]  # walk back from the module that imports `start` (edges to itself are not recorded)
          while path[-1] != start:
            path.append(prev[path[-1]])
          return path[::-1] + [start]
        if w not in prev:
          prev[w] = v
          nxt.append(w)
    frontier = nxt
  return comp


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--all", action="store_true", help="print every module's imports of cpt_jax modules")
  parser.add_argument("--local", action="store_true", help="list the function-level imports")
  args = parser.parse_args(argv)
  graph, local = build_graph()
  if args.all:
    for mod in sorted(graph):
      print(f"{mod} -> {', '.join(sorted(graph[mod])) or '-'}")
  if args.local:
    for mod in sorted(local):
      for path, line, name in sorted(local[mod]):
        print(f"{path}:{line}: {name}")
  found = cycles(graph)
  for comp in found:
    print("cycle: " + " -> ".join(cycle_path(graph, comp)) + (f"  (component: {', '.join(comp)})"
                                                               if len(comp) > 2 else ""))
  print(f"{len(graph)} modules, {sum(map(len, graph.values()))} imports between them, {len(found)} cycle(s)")
  return 1 if found else 0


if __name__ == "__main__":
  sys.exit(main())
