"""An import-linter contract type it does not have: no import cycle between modules, anywhere.

`acyclic_siblings` finds cycles between the children of each package. A cycle through a
package's own `__init__` and its descendants (the package imports a child for a registry, the
child imports the package for a type) is none of those: this contract looks at the modules
themselves. Every group of modules that reach each other by imports (a strongly connected
component of grimp's graph, imports under `if TYPE_CHECKING:` included) is a broken contract,
shown as one shortest cycle with its import lines.

Registered in pyproject.toml (`contract_types`); `lint-imports` finds this module because it
puts the working directory (the clone, from `scripts/lint`) on `sys.path`.
"""

from __future__ import annotations

import grimp
from importlinter import Contract, ContractCheck, fields, output


class AcyclicModulesContract(Contract):
    """Options: `containers`, the packages whose modules must not import each other in a cycle."""

    type_name = "acyclic_modules"

    containers = fields.ListField(subfield=fields.ModuleField())

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:
        names = {m.name for m in self.containers}  # type: ignore[attr-defined]  # a parsed field
        modules = sorted(m for m in graph.modules if m in names or m.startswith(tuple(f"{n}." for n in names)))
        inside = set(modules)
        imports = {m: sorted(i for i in graph.find_modules_directly_imported_by(m) if i in inside)
                   for m in modules}
        cycles = []
        for component in _components(modules, imports):
            first = component[0]
            back = min((graph.find_shortest_chain(importer=i, imported=first) or ()
                        for i in imports[first] if i in component), key=len)
            chain = (first, *back)
            cycles.append([(a, b, _lines(graph, a, b)) for a, b in zip(chain, chain[1:], strict=False)])
        return ContractCheck(kept=not cycles, metadata={"cycles": cycles})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for cycle in check.metadata["cycles"]:
            output.print_error(f"{cycle[0][0]} imports itself through {len(cycle) - 1} other module(s):")
            output.new_line()
            for importer, imported, lines in cycle:
                output.indent_cursor()
                output.print_error(f"{importer} -> {imported} (l. {lines})", bold=False)
            output.new_line()


def _lines(graph: grimp.ImportGraph, importer: str, imported: str) -> str:
    details = graph.get_import_details(importer=importer, imported=imported)
    return ", ".join(str(d["line_number"]) for d in details) or "?"


def _components(modules: list[str], imports: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module, each sorted,
    iteratively (no recursion limit on a deep package)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in modules:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            targets = imports[node]
            if child < len(targets):
                work.append((node, child + 1))
                target = targets[child]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            if work:  # back in the caller: carry the low link up
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found
