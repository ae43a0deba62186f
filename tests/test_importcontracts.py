"""scripts/importcontracts.py: the import-linter contract that finds import cycles between
modules, a package's `__init__` included (`make lint` runs it over fisproxy; here on small
graphs built by hand, each cycle known)."""

from __future__ import annotations

import grimp
import pytest

from scripts.importcontracts import AcyclicModulesContract


def graph(*imports: tuple[str, str, int]) -> grimp.ImportGraph:
    built = grimp.ImportGraph()
    for importer, imported, line in imports:
        built.add_import(importer=importer, imported=imported, line_number=line,
                         line_contents=f"import {imported}")
    return built


def check(built: grimp.ImportGraph, *containers: str):
    contract = AcyclicModulesContract(name="no cycles", session_options={},
                                      contract_options={"containers": list(containers)})
    return contract, contract.check(built, verbose=False)


def test_a_package_that_imports_its_module_which_imports_the_package_is_a_cycle() -> None:
    """The case acyclic_siblings does not see: `pkg/__init__.py` imports `pkg.kind` (a
    registry), `pkg/kind.py` imports `pkg` (for a type)."""
    _, result = check(graph(("pkg", "pkg.kind", 3), ("pkg.kind", "pkg", 7)), "pkg")

    assert not result.kept
    assert result.metadata["cycles"] == [[("pkg", "pkg.kind", "3"), ("pkg.kind", "pkg", "7")]]


def test_a_longer_cycle_is_shown_once_with_each_import_line_and_nothing_outside_it() -> None:
    _, result = check(graph(("pkg.a", "pkg.b", 1), ("pkg.b", "pkg.c", 2), ("pkg.c", "pkg.a", 3),
                            ("pkg.c", "pkg.d", 4), ("pkg.e", "pkg.a", 5)), "pkg")

    assert not result.kept
    assert result.metadata["cycles"] == [[("pkg.a", "pkg.b", "1"), ("pkg.b", "pkg.c", "2"),
                                          ("pkg.c", "pkg.a", "3")]]


def test_two_separate_cycles_are_two_broken_findings() -> None:
    _, result = check(graph(("pkg.a", "pkg.b", 1), ("pkg.b", "pkg.a", 2),
                            ("pkg.x", "pkg.y", 3), ("pkg.y", "pkg.x", 4)), "pkg")

    assert [[edge[:2] for edge in cycle] for cycle in result.metadata["cycles"]] == [
        [("pkg.a", "pkg.b"), ("pkg.b", "pkg.a")], [("pkg.x", "pkg.y"), ("pkg.y", "pkg.x")]]


def test_imports_that_only_go_down_keep_the_contract() -> None:
    _, result = check(graph(("pkg", "pkg.a", 1), ("pkg.a", "pkg.b", 2), ("pkg", "pkg.b", 3),
                            ("pkg.b", "pkg.c", 4)), "pkg")

    assert result.kept
    assert result.metadata["cycles"] == []


def test_a_cycle_outside_the_containers_is_not_theirs() -> None:
    _, result = check(graph(("other.a", "other.b", 1), ("other.b", "other.a", 2),
                            ("pkg.a", "other.a", 3)), "pkg")

    assert result.kept


def test_a_deep_chain_is_checked_without_recursion() -> None:
    """Tarjan's algorithm done iteratively: a chain deeper than Python's recursion limit."""
    depth = 5000
    links = [(f"pkg.m{i}", f"pkg.m{i + 1}", i) for i in range(depth)]
    _, result = check(graph(*links, (f"pkg.m{depth}", "pkg.m0", depth)), "pkg")

    assert not result.kept
    assert len(result.metadata["cycles"][0]) == depth + 1


def test_a_broken_contract_names_each_import_of_the_cycle(capsys: pytest.CaptureFixture[str]) -> None:
    contract, result = check(graph(("pkg", "pkg.kind", 3), ("pkg.kind", "pkg", 7)), "pkg")

    contract.render_broken_contract(result)

    shown = capsys.readouterr().out
    assert "pkg imports itself through 1 other module(s):" in shown
    assert "pkg -> pkg.kind (l. 3)" in shown
    assert "pkg.kind -> pkg (l. 7)" in shown
