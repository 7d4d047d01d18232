"""The AWS limits the fakes enforce are all in one registry with their sources, and docs/quotas.md is
that registry (issue 21): a limit added to a fake without a row, a row whose value no longer matches
the code, or a doc that drifted from the registry fails here."""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from orchestrator.drill.world.limits import FAKE_MODULES, LIMITS, NOT_LIMITS, Source, markdown
from orchestrator.registry.quotas import DEFAULT_QUOTAS

REPO = Path(__file__).resolve().parents[2]
CONSTANT = re.compile(r"_?[A-Z][A-Z0-9_]*\Z")
LOCATION = re.compile(r"(?P<path>[\w/]+\.py):(?P<symbol>[\w.]+)(?:\[(?P<key>\w+)\])?\Z")


def _module(path: str) -> Any:
    return importlib.import_module(path[:-3].replace("/", "."))


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def resolve(where: str) -> Any:
    """The value at a registry location: a module constant, a mapping entry, or a class attribute's
    default (a dataclass field, or the literal an `__init__` assigns to `self.attr`)."""
    m = LOCATION.fullmatch(where)
    assert m, f"{where}: not path:NAME, path:NAME[key] or path:Class.attr"
    module = _module(m["path"])
    if "." not in m["symbol"]:
        value = getattr(module, m["symbol"])
        return value[m["key"]] if m["key"] else value
    cls_name, attr = m["symbol"].split(".", 1)
    cls = getattr(module, cls_name)
    if attr in getattr(cls, "__dataclass_fields__", {}):
        return cls.__dataclass_fields__[attr].default
    tree = ast.parse((REPO / m["path"]).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == cls_name:
            for sub in ast.walk(node):
                if isinstance(sub, ast.Assign) and any(
                        isinstance(t, ast.Attribute) and t.attr == attr and isinstance(t.value, ast.Name)
                        and t.value.id == "self" for t in sub.targets):
                    return ast.literal_eval(sub.value)
    raise AssertionError(f"{where}: no such attribute")


def fake_constants() -> Iterator[tuple[str, Any]]:
    """Every numeric module-level constant of the fake modules (mapping constants entry by entry)."""
    for path in FAKE_MODULES:
        tree = ast.parse((REPO / path).read_text())
        module = _module(path)
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, ast.AnnAssign) and node.value is not None else []
            for target in targets:
                if not (isinstance(target, ast.Name) and CONSTANT.fullmatch(target.id)):
                    continue
                value = getattr(module, target.id)
                if _numeric(value):
                    yield f"{path}:{target.id}", value
                elif isinstance(value, Mapping) and value and all(_numeric(v) for v in value.values()):
                    if f"{path}:{target.id}" in NOT_LIMITS:
                        yield f"{path}:{target.id}", value
                        continue
                    for key, entry in value.items():
                        yield f"{path}:{target.id}[{key}]", entry


@pytest.mark.slow
def test_every_limit_a_fake_enforces_is_in_the_registry() -> None:
    listed = {lim.where for lim in LIMITS} | set(NOT_LIMITS)
    found = dict(fake_constants())
    assert len(found) > 20  # the scan sees the fakes (a wrong path list would pass vacuously)
    missing = sorted(set(found) - listed)
    assert missing == [], f"limits enforced by a fake but not in orchestrator/drill/world/limits.py: {missing}"


def test_every_row_holds_the_value_its_code_enforces() -> None:
    wrong = {lim.where: (lim.value, resolve(lim.where)) for lim in LIMITS if resolve(lim.where) != lim.value}
    assert wrong == {}


def test_no_row_or_exception_names_a_constant_that_is_gone() -> None:
    for where in NOT_LIMITS:
        resolve(where)
    assert len({lim.where for lim in LIMITS}) == len(LIMITS)


@pytest.mark.parametrize("lim", [lim for lim in LIMITS], ids=lambda lim: lim.where.rsplit(":", 1)[-1])
def test_aws_rows_cite_an_aws_page_and_ours_say_why(lim) -> None:  # noqa: ANN001
    if lim.source is Source.AWS:
        assert lim.url.startswith("https://docs.aws.amazon.com/"), lim
    else:
        assert lim.url == "" and lim.note, lim


def test_the_product_quota_table_matches_the_sourced_table() -> None:
    """The quota proxy throttles at the product's DEFAULT_QUOTAS: each entry must be a sourced row."""
    sourced = {lim.where.split("[", 1)[1].rstrip("]"): lim.value for lim in LIMITS
               if lim.where.startswith("orchestrator/registry/quotas.py:DEFAULT_QUOTAS[")}
    assert dict(DEFAULT_QUOTAS) == sourced


def test_docs_quotas_is_the_registry() -> None:
    text = (REPO / "docs" / "quotas.md").read_text()
    begin, end = "<!-- limits:begin (rendered from orchestrator/drill/world/limits.py) -->\n", "<!-- limits:end -->"
    assert begin in text and end in text
    assert text.split(begin, 1)[1].split(end, 1)[0] == markdown()


def test_the_quota_proxy_throttles_at_the_sourced_table_not_the_products(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrong number in the product's table must not be wrong in the tests too (issue 21)."""
    from orchestrator.registry import quotas
    from tests.quota_proxy import QuotaProxy

    monkeypatch.setitem(quotas.DEFAULT_QUOTAS, "list_things", 99.0)  # type: ignore[index]
    monkeypatch.setattr(quotas, "UNLISTED_RATE", 77.0)
    proxy = QuotaProxy("http://127.0.0.1:9", scale=2.0)
    try:
        assert proxy.rate("list_things") == 20.0  # the sourced 10/s, scaled
        assert proxy.rate("update_thing_shadow") == 8000.0  # the shared shadow bucket
        assert proxy.rate("delete_thing") == 20.0  # an unlisted API: the sourced lowest quota
    finally:
        proxy.server.server_close()
