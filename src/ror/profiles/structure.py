"""Compile the ROR StructureDefinitions (differentials) over the FHIR R4 base model into element trees.

The IG publishes differentials only: what the ROR changes in core R4. ``compile_profiles`` starts from
the R4 element model (``data/fhir-r4-base.json``: names, types, arrays, minimums, required bindings)
and applies every differential element on top: cardinalities, type and target-profile restrictions,
bindings, fixed and pattern values, slicing and slices. Extension slices start as a copy of the
extension's own compiled definition (``data/ig/extensions-0.7.0.json`` and the IG's
``StructureDefinition-ror-location-supported-capacity.json``), so the profile's extra constraints on an
extension (a pattern on one sub-extension, say) stack on the extension's rules. A new IG version is a
data update: nothing in here names a ROR element.

Nodes not touched by any differential are shared with the base model; constrained paths are copied
first (copy on write), so compiling all profiles takes milliseconds and little memory.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib import resources

PRIMITIVES = frozenset({"base64Binary", "boolean", "canonical", "code", "date", "dateTime", "decimal", "id",
                        "instant", "integer", "markdown", "oid", "positiveInt", "string", "time", "unsignedInt",
                        "uri", "url", "uuid", "xhtml"})


@dataclass
class Slicing:
    discriminators: list[tuple[str, str]]  # (type, path)
    rules: str  # open | closed | openAtEnd


@dataclass
class Node:
    """One element definition: base R4 facts overlaid with the profile's constraints."""

    path: str  # definition path, e.g. HealthcareService.characteristic:careMode
    name: str  # JSON property (the base name for a choice: ``value`` for ``value[x]``)
    min: int = 0
    max: int | None = 1  # None: unbounded
    many: bool = False  # JSON array in the base model
    types: list[str] = field(default_factory=list)
    binding: str | None = None  # required value set
    binding_strength: str | None = None
    fixed: object = None
    pattern: object = None
    profile: str | None = None  # extension definition URL, for an extension slice
    targets: tuple[str, ...] = ()  # reference: allowed target resource types ((): any)
    slice_name: str | None = None
    slicing: Slicing | None = None
    slices: list[Node] = field(default_factory=list)
    short: str | None = None  # mapping name (ME attribute) when the differential gives one
    is_choice: bool = False  # value[x] in the base model: JSON keys carry the type (valueString)
    _children: dict[str, Node] | None = None
    _base_type: str | None = None  # type whose base elements populate the children lazily
    owned: bool = True  # False: shared with the base model, copy before changing

    def children(self) -> dict[str, Node]:
        if self._children is None:
            t = self._base_type or (self.types[0] if len(self.types) == 1 else None)
            self._children = dict(base_children(t)) if t else {}
        return self._children

    def own_child(self, name: str) -> Node:
        """The child ``name``, copied from the base model if still shared (copy on write)."""
        kids = self.children()
        if name not in kids:
            raise KeyError(name)
        kid = kids[name]
        if not kid.owned:
            kid = copy.copy(kid)
            kid.owned = True
            kid.path = f"{self.path}.{name}"
            kid.slices = list(kid.slices)
            kid._children = None if kid._children is None else dict(kid._children)
            kids[name] = kid
        return kid

    def own_slice(self, slice_name: str) -> Node:
        for s in self.slices:
            if s.slice_name == slice_name:
                return s
        s = Node(f"{self.path}:{slice_name}", self.name, 0, self.max, self.many, list(self.types), self.binding,
                 self.binding_strength, self.fixed, self.pattern, self.profile, self.targets, slice_name,
                 is_choice=self.is_choice)
        s._base_type = self._base_type
        s._children = {k: copy.deepcopy(v) if v.owned else v for k, v in self.children().items()}
        for kid in s._children.values():
            if kid.owned:
                _repath(kid, s.path)
        self.slices.append(s)
        return s


_MODEL: dict | None = None


def _model() -> dict:
    global _MODEL
    if _MODEL is None:
        raw = (resources.files("ror") / "data" / "fhir-r4-base.json").read_text(encoding="utf-8")
        _MODEL = json.loads(raw)["types"]
    return _MODEL


def _base_node(parent_path: str, name: str, spec: list) -> Node:
    types, many, required, binding, targets, children = spec
    n = Node(f"{parent_path}.{name}", name, 1 if required else 0, None if many else 1, many, list(types),
             binding, "required" if binding else None, targets=tuple(targets), is_choice=len(types) > 1,
             owned=False)
    if children is not None:
        n._children = {k: _base_node(n.path, k, v) for k, v in children.items()}
    return n


@cache
def _base_children_cached(type_name: str) -> tuple[tuple[str, Node], ...]:
    spec = _model().get(type_name)
    if spec is None:
        return ()
    return tuple((k, _base_node(type_name, k, v)) for k, v in spec["elements"].items())


def base_children(type_name: str) -> dict[str, Node]:
    return dict(_base_children_cached(type_name))


def is_resource_type(name: str) -> bool:
    spec = _model().get(name)
    return spec is not None and spec["kind"] == "resource"


def _root(type_name: str) -> Node:
    root = Node(type_name, type_name, 0, None, types=[type_name])
    root._base_type = type_name
    return root


@cache
def datatype(type_name: str) -> Node:
    """The unconstrained R4 definition of a data type, shared (read only).

    A choice the profiles leave open (``value[x]`` of an extension the IG does not define, such as the
    INSEE code of a French address or the core ``organization-period``) has no children of its own: its
    value is checked against the R4 type its JSON key names (``valueCoding`` -> Coding).
    """
    return _root(type_name)


def _type_name(ref: str) -> str:
    return ref.rstrip("/").rsplit("/", 1)[-1]


# Target profiles of the IG, by resource type (a reference to ror-organization is to an Organization).
_PROFILE_TYPES = {"FrOrganization": "Organization", "ror-organization": "Organization",
                  "ror-location": "Location", "ror-healthcareservice": "HealthcareService",
                  "ror-practitioner": "Practitioner", "ror-practitionerrole": "PractitionerRole", "ror-task": "Task"}


def _apply(node: Node, el: dict, extensions: dict[str, Node]) -> None:
    if "min" in el:
        node.min = int(el["min"])
    if "max" in el:
        node.max = None if el["max"] == "*" else int(el["max"])
    if el.get("type"):
        types = el["type"]
        node.types = [t["code"] for t in types]
        profiles = [p for t in types for p in t.get("profile", [])]
        if node.types == ["Extension"] and profiles:
            node.profile = profiles[0]
            ext = extensions.get(profiles[0])
            if ext is not None and node.slice_name is not None:
                _graft(node, ext)
        targets = [_PROFILE_TYPES.get(_type_name(p), _type_name(p)) for t in types for p in t.get("targetProfile", [])]
        if targets:
            node.targets = tuple(dict.fromkeys(targets))
    if "binding" in el:
        b = el["binding"]
        node.binding_strength = b.get("strength")
        node.binding = b.get("valueSet") if b.get("strength") in ("required", "extensible") else None
    for k, v in el.items():
        if k.startswith("fixed"):
            node.fixed = v
        elif k.startswith("pattern"):
            node.pattern = v
    if "slicing" in el:
        s = el["slicing"]
        node.slicing = Slicing([(d["type"], d["path"]) for d in s.get("discriminator", [])], s.get("rules", "open"))
    for m in el.get("mapping", []):
        if m.get("map") and not node.short:
            node.short = m["map"]


def _graft(slice_node: Node, ext: Node) -> None:
    """Give an extension slice the structure of the extension's own definition."""
    slice_node._children = {k: copy.deepcopy(v) for k, v in ext.children().items()}
    for kid in slice_node._children.values():
        kid.owned = True
        _repath(kid, slice_node.path)
    slice_node._base_type = "Extension"


def _repath(node: Node, parent: str) -> None:
    node.path = f"{parent}.{node.name}" + (f":{node.slice_name}" if node.slice_name else "")
    if node._children:
        for k in node._children.values():
            _repath(k, node.path)
    for s in node.slices:
        s.path = f"{parent}.{s.name}:{s.slice_name}"
        if s._children:
            for k in s._children.values():
                _repath(k, s.path)


def _segments(element_id: str) -> list[tuple[str, str | None]]:
    out = []
    for seg in element_id.split(".")[1:]:
        name, _, slice_name = seg.partition(":")
        out.append((name.removesuffix("[x]"), slice_name or None))
    return out


def compile_structure(sd: dict, extensions: dict[str, Node], unresolved: list[str] | None = None) -> Node:
    """Element tree of one profile or extension definition.

    An element the base model cannot place (a constraint inside an extension whose definition is not
    shipped, such as FR Core's ``usePeriod``) is listed in ``unresolved`` and not enforced.
    """
    root = _root(sd["type"])
    if sd["type"] == "Extension":
        root.many = False
    for el in sd.get("differential", {}).get("element", []):
        eid = el.get("id") or el["path"]
        node = root
        try:
            for name, slice_name in _segments(eid):
                node = node.own_child(name)
                if slice_name:
                    node = node.own_slice(slice_name)
        except KeyError:
            if unresolved is not None:
                unresolved.append(eid)
            continue
        _apply(node, el, extensions)
        if node.slice_name and node.profile is None:
            node.profile = next((urls[0] for suffix, urls in _FR_CORE_SLICES.items() if eid.endswith(suffix)), None)
    return root


# The commune of an address (FR Core FrAddress, whose definition is not shipped: the ROR differential names
# the slice ``inseeCode`` without its URL). Its URL changed across FR Core versions and data in the field
# carry all of them: FR Core 2 (written by the feeds), FR Core 1 (Interop'Santé), and the one the IG's own
# near-insee-code SearchParameter names.
FR_ADDRESS_INSEE = ("https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-address-insee-code",
                    "http://interopsante.org/fhir/StructureDefinition/FrAddressInseeCode",
                    "https://interop.esante.gouv.fr/ig/fhir/ror/structuredefinition/datatype/fr-address-insee-code")
_FR_CORE_SLICES = {"address.extension:inseeCode": FR_ADDRESS_INSEE}
URL_ALIASES = {FR_ADDRESS_INSEE[0]: FR_ADDRESS_INSEE[1:]}  # slice URL -> the other URLs it also holds


@dataclass
class Profiles:
    by_type: dict[str, Node]  # resource type -> compiled ROR profile
    profile_urls: dict[str, str]  # resource type -> profile canonical URL
    extensions: dict[str, Node]  # extension URL -> compiled definition
    unresolved: list[str]  # differential elements that cannot be enforced (their base is not shipped)


def _ig_json(name: str) -> dict:
    return json.loads((resources.files("ror") / "data" / "ig" / name).read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def compile_profiles() -> Profiles:
    """Every ROR profile and extension definition shipped in ``ror/data/ig``, compiled once."""
    ext_sds = [e["resource"] for e in _ig_json("extensions-0.7.0.json")["entry"]]
    folder = resources.files("ror") / "data" / "ig"
    sds = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.iterdir(), key=lambda p: p.name)
           if p.name.startswith("StructureDefinition-")]
    ext_sds += [sd for sd in sds if sd["type"] == "Extension"]
    extensions: dict[str, Node] = {}
    # Extensions nest (contact -> contact-telecom): compile leaves first, then those that use them.
    pending = list(ext_sds)
    while pending:
        progressed = False
        for sd in list(pending):
            needs = {p for el in sd["differential"]["element"] for t in el.get("type", [])
                     for p in t.get("profile", [])}
            if all(n in extensions or n not in {s["url"] for s in ext_sds} for n in needs):
                extensions[sd["url"]] = compile_structure(sd, extensions)
                pending.remove(sd)
                progressed = True
        if not progressed:
            raise ValueError(f"circular extension definitions: {[s['url'] for s in pending]}")
    by_type, urls, unresolved = {}, {}, []
    for sd in sds:
        if sd["type"] != "Extension":
            by_type[sd["type"]] = compile_structure(sd, extensions, unresolved)
            urls[sd["type"]] = sd["url"]
    return Profiles(by_type, urls, extensions, unresolved)
