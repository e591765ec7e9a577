"""The server's CapabilityStatement: instantiates the IG's ror-serveur and lists exactly what this
server implements, derived from the same registry and interaction table the server runs on."""

from __future__ import annotations

from functools import lru_cache

from ror import __version__
from ror.fhir.service import FHIR_JSON, INTERACTIONS, JSON_PATCH
from ror.profiles.searchparams import RESOURCE_TYPES, SPECIAL, registry

IG = "https://interop.esante.gouv.fr/ig/fhir/ror"
PROFILES = {
    "Organization": "ror-organization", "HealthcareService": "ror-healthcareservice", "Location": "ror-location",
    "Practitioner": "ror-practitioner", "PractitionerRole": "ror-practitionerrole", "Task": "ror-task",
}
_COMMON = [("_id", "token", "http://hl7.org/fhir/SearchParameter/Resource-id"),
           ("_content", "string", "http://hl7.org/fhir/SearchParameter/Resource-content"),
           ("_has", "special", "http://hl7.org/fhir/SearchParameter/Resource-has"),
           ("_filter", "special", "http://hl7.org/fhir/SearchParameter/Resource-filter")]
# The include set of the IG (§3.4) plus the other reference parameters, all usable with :iterate.
REVINCLUDES = {"Location": ["HealthcareService:location", "PractitionerRole:location"],
               "HealthcareService": ["PractitionerRole:service", "Task:focus"],
               "Organization": ["Organization:partof", "HealthcareService:organization", "Location:organization",
                                "PractitionerRole:organization", "Task:focus"],
               "Practitioner": ["PractitionerRole:practitioner", "Task:focus"],
               "PractitionerRole": ["Task:focus"], "Task": []}


@lru_cache(maxsize=4)
def capability_statement(base: str) -> dict:
    reg = registry()
    resources = []
    for rtype in RESOURCE_TYPES:
        params = [{"name": code, "definition": url, "type": t} for code, t, url in _COMMON]
        includes = []
        for p in sorted(reg.for_type(rtype), key=lambda p: p.code):
            entry = {"name": p.code, "definition": p.url, "type": "special" if p.type == SPECIAL else p.type}
            if p.note:
                entry["documentation"] = "Deviation from the IG definition: " + p.note
            params.append(entry)
            if p.type == "reference":
                includes.append(f"{rtype}:{p.code}")
        if rtype == "HealthcareService":
            includes += ["Organization:partof", "PractitionerRole:practitioner"]
        resources.append({
            "type": rtype,
            "profile": f"{IG}/StructureDefinition/{PROFILES[rtype]}",
            "interaction": [{"code": c} for c in INTERACTIONS[rtype]],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": False,
            "conditionalUpdate": False,
            "conditionalDelete": "not-supported",
            "searchInclude": includes,
            "searchRevInclude": REVINCLUDES[rtype],
            "searchParam": params,
        })
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-25",
        "publisher": "ROR national",
        "kind": "instance",
        "instantiates": [f"{IG}/CapabilityStatement/ror-serveur|0.7.0",
                         "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data|2.0.0"],
        "software": {"name": "ROR national", "version": __version__},
        "implementation": {"description": "ROR national FHIR server", "url": base},
        "fhirVersion": "4.0.1",
        "format": [FHIR_JSON, "json"],
        "patchFormat": [FHIR_JSON, JSON_PATCH],
        "implementationGuide": [f"{IG}/ImplementationGuide/ans.fhir.fr.ror|0.7.0"],
        "rest": [{
            "mode": "server",
            "documentation": "Search: default page 200 (RG_RECH_52), maximum set by ROR_PAGE_SIZE_MAX; "
                             "keyset paging over a snapshot (follow the `next` links). Conditional PATCH "
                             "by search (PATCH [base]/Type?criteria): 404 when nothing matches, 412 when "
                             "several do. Prefer: handling=lenient ignores unknown parameters with a warning.",
            "resource": resources,
            "interaction": [{"code": "transaction"}, {"code": "batch"}],
            "operation": [{
                "name": "export",
                "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
                "documentation": "System-level Bulk Data export (IG §3.6): _type, _since, _typeFilter, "
                                 "includeAssociatedData=_myCompleteExtract, _outputFormat (NDJSON; "
                                 "application/fhir+json accepted as the national deviation, files are NDJSON). "
                                 "Prefer: respond-async optional. Content filtered by the caller's access profile.",
            }],
            "searchParam": [
                {"name": "_count", "definition": "http://hl7.org/fhir/SearchParameter/Resource-count",
                 "type": "number"},
                {"name": "_sort", "definition": "http://hl7.org/fhir/SearchParameter/Resource-sort", "type": "token"},
                {"name": "_include", "definition": "http://hl7.org/fhir/SearchParameter/Resource-include",
                 "type": "token"},
                {"name": "_revinclude", "definition": "http://hl7.org/fhir/SearchParameter/Resource-revinclude",
                 "type": "token"},
                {"name": "_total", "definition": "http://hl7.org/fhir/SearchParameter/Resource-total",
                 "type": "token"},
                {"name": "_summary", "definition": "http://hl7.org/fhir/SearchParameter/Resource-summary",
                 "type": "token", "documentation": "count only"},
            ],
        }],
    }
