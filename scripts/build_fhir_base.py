#!/usr/bin/env python3
"""Build ``src/ror/data/fhir-r4-base.json``: the FHIR R4 (4.0.1) element model the ROR profiles constrain.

The ROR StructureDefinitions are differentials: they only state what the IG changes. Validating a resource
also needs what core R4 says of every element (name, types, array or not, minimum, required bindings,
reference targets), for the resources the ROR serves and the data types they use. This script extracts
exactly that, once, into a compact JSON file read by ``ror.profiles.structure``; nothing here runs at
server run time.

Input: the npm package ``fhir`` 4.12.0 (Lantana Consulting Group's FHIR.js, Apache-2.0), whose
``profiles/types.json`` is a digest of the official R4 ``profiles-resources.json`` and ``profiles-types.json``
(element names, types, ``_multiple``, ``_required``, bindings, target profiles, choice groups).

How to run::

    tmp=$(mktemp -d); (cd "$tmp" && npm pack fhir@4.12.0)
    .venv/bin/python scripts/build_fhir_base.py "$tmp/fhir-4.12.0.tgz"

Output format: ``{"types": {Name: {"kind": ..., "elements": {name: [types, max_many, min_one, binding,
targets, children]}}}}`` where ``types`` lists the type codes (several for a choice ``value[x]``, stored
under its base name), ``binding`` is the required value set URL or null, ``targets`` the referenced
resource types, and ``children`` the inline element map of a BackboneElement (else null).
"""

from __future__ import annotations

import json
import sys
import tarfile
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "src" / "ror" / "data" / "fhir-r4-base.json"
ROOTS = ("HealthcareService", "Location", "Organization", "Practitioner", "PractitionerRole", "Task",
         "Extension", "Meta", "Narrative")
SD = "http://hl7.org/fhir/StructureDefinition/"


def _elements(props: list[dict], needed: set[str]) -> dict:
    out: dict = {}
    for p in props:
        name = p["_name"]
        if name.startswith("_"):
            continue  # primitive companions are modelled by the validator itself
        base = p.get("_choice", name).removesuffix("[x]")
        binding = p.get("_valueSet") if p.get("_valueSetStrength") == "required" else None
        if binding:
            binding = binding.split("|")[0]
        targets = sorted({t.rsplit("/", 1)[-1] for t in p.get("_targetProfiles", [])})
        children = None
        tcode = p["_type"]
        if tcode == "BackboneElement" or (tcode == "Element" and p.get("_properties")):
            children = _elements(p["_properties"], needed)
        else:
            needed.add(tcode)
        if base in out and p.get("_choice"):
            out[base][0].append(tcode)
            continue
        out[base] = [[tcode], bool(p.get("_multiple")), bool(p.get("_required")), binding, targets, children]
    return out


def main(tgz: str) -> None:
    with tarfile.open(tgz) as tar:
        types = json.load(tar.extractfile("package/profiles/types.json"))
    needed: set[str] = set(ROOTS)
    done: dict = {}
    while needed - done.keys():
        name = (needed - done.keys()).pop()
        spec = types.get(name)
        if spec is None or name in ("Resource",):
            done[name] = None
            continue
        done[name] = {"kind": spec["_kind"], "elements": _elements(spec["_properties"], needed)}
    model = {k: v for k, v in sorted(done.items()) if v is not None}
    OUT.write_text(json.dumps({"source": "npm fhir@4.12.0 profiles/types.json (FHIR R4 4.0.1)", "types": model},
                              ensure_ascii=False, separators=(",", ":")) + "\n")
    print(f"{OUT}: {len(model)} types, {OUT.stat().st_size:,} bytes")


if __name__ == "__main__":
    main(sys.argv[1])
