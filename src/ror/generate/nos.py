"""The NOS snapshot of the generator (``data/nos.json``, built by ``ror.generate.nosdata``).

Codings are built once and shared between resources: the generator writes millions of identical
``{"system", "code", "display"}`` objects, and reusing them keeps resource building cheap. Shared objects
are never mutated (dirty records replace them).
"""

from __future__ import annotations

import json
from functools import cached_property
from importlib import resources


class Nos:
    def __init__(self, data: dict | None = None):
        if data is None:
            data = json.loads(resources.files("ror.generate").joinpath("data/nos.json").read_text("utf-8"))
        self.tables: dict[str, dict] = data["tables"]
        self.category_aggregate: dict[str, str] = data["category_aggregate"]
        self._codings: dict[tuple[str, str, bool], dict] = {}
        self._concepts: dict[tuple[str, str, bool], dict] = {}

    def label(self, table: str, code: str) -> str:
        return self.tables[table]["codes"][code]

    def long_label(self, table: str, code: str) -> str:
        return self.tables[table]["labels2"].get(code) or self.label(table, code)

    def url(self, table: str) -> str:
        return self.tables[table]["url"]

    def oid(self, table: str) -> str:
        return self.tables[table]["oid"]

    def has(self, table: str, code: str) -> bool:
        return code in self.tables[table]["codes"]

    @cached_property
    def current_communes(self) -> frozenset[str]:
        return frozenset(self.tables["TRE_R13-CommuneOM"]["codes"].split())

    def coding(self, table: str, code: str, display: bool = True) -> dict:
        """A shared Coding; raises KeyError for a code the snapshot does not hold."""
        key = (table, code, display)
        found = self._codings.get(key)
        if found is None:
            label = self.label(table, code)
            found = {"system": self.url(table), "code": code}
            if display:
                found["display"] = label
            self._codings[key] = found
        return found

    def concept(self, table: str, code: str, display: bool = True) -> dict:
        """A shared CodeableConcept holding one coding."""
        key = (table, code, display)
        found = self._concepts.get(key)
        if found is None:
            found = self._concepts[key] = {"coding": [self.coding(table, code, display)]}
        return found
