"""One CSV row per organisation, offer and place: identifiers, names, address, commune, coordinates, codes with
their NOS labels, capacities as the published profile sees them. ``;``-separated, UTF-8, header row, ``|`` between
several values."""

from __future__ import annotations

from ror.opendata import fhir as F

ORG_COLUMNS = ("id", "region", "idnat_struct", "finess", "siren_siret", "other_identifiers", "name", "type_codes",
               "type_labels", "parent_id", "address", "postal_code", "city", "commune_cog", "commune_label",
               "phones_public", "last_updated")
OFFER_COLUMNS = ("id", "region", "offer_identifier", "name", "organization_id", "activity_code", "activity_label",
                 "champ_code", "champ_label", "care_mode_codes", "care_mode_labels", "public_codes", "public_labels",
                 "age_min", "age_max", "category_code", "category_label", "place_ids", "commune_cog",
                 "commune_label", "latitude", "longitude", "capacities", "closing_start", "closing_end",
                 "last_updated")
PLACE_COLUMNS = ("id", "region", "place_identifier", "external_identifier", "name", "address", "postal_code", "city",
                 "commune_cog", "commune_label", "latitude", "longitude", "function_code", "function_label",
                 "capacities", "residential_capacities", "phones_public", "last_updated")
CAPACITY_HELP = ("capacities: one item per capacity record, 'nature/status/temporality=number' (TRE_R329 / TRE_R330 / "
                 "TRE_R331 codes), '|' between records")


def _join(values) -> str:
    return "|".join(str(v) for v in values if v not in (None, ""))


def _codes(cs: list[dict]) -> tuple[str, str]:
    return _join(c["code"] for c in cs), _join(F.label(c.get("system"), c["code"], c.get("display")) for c in cs)


def _address(res: dict) -> tuple[str, str, str]:
    a = F.main_address(res) or {}
    return " ".join(x for x in a.get("line", ()) if x), a.get("postalCode", ""), a.get("city", "")


def _commune(res: dict) -> tuple[str, str]:
    c = F.commune(res)
    return (c["code"], F.label(c.get("system"), c["code"], c.get("display"))) if c else ("", "")


def _phones(res: dict) -> str:
    return _join(t.get("value") for t in res.get("telecom", ()) if t.get("system") in ("phone", None))


def capacities(place: dict) -> str:
    return _join(f"{c.get('capacityType', '')}/{c.get('capacityStatus', '')}/{c.get('temporalityCapacity', '')}"
                 f"={c.get('nbCapacity', '')}" for c in F.capacities(place))


def organization_row(res: dict) -> list:
    ids = res.get("identifier", ())
    by = {i.get("system"): i.get("value") for i in ids}
    others = [f"{i.get('system')}|{i.get('value')}" for i in ids if i.get("system") not in (
        "urn:oid:1.2.250.1.71.4.2.2", "https://finess.esante.gouv.fr", "https://sirene.fr")]
    codes, labels = _codes(F.codes_of(res.get("type")))
    return [res["id"], F.region_of(res) or "", by.get("urn:oid:1.2.250.1.71.4.2.2", ""),
            by.get("https://finess.esante.gouv.fr", ""), by.get("https://sirene.fr", ""), " ".join(others),
            res.get("name", ""), codes, labels, F.ref_id(res.get("partOf")), *_address(res), *_commune(res),
            _phones(res), (res.get("meta") or {}).get("lastUpdated", "")]


def offer_row(hs: dict, places: list[dict]) -> list:
    activity = _codes(F.codes_of(hs.get("specialty"), "TRE_R211"))
    champ = _codes(F.codes_of(hs.get("type"), "TRE_R227"))
    care = _codes(F.codes_of(hs.get("characteristic"), "TRE_R213"))
    patient = F.ext(hs, F.PATIENT_TYPE) or {}
    public = _codes(F.codes_of([(F.ext(patient, "supportedPatientInfo") or {}).get("valueCodeableConcept")]))
    ages = (F.ext(patient, "ageRange") or {}).get("valueRange") or {}
    category = _codes(F.codes_of(hs.get("category")))
    first = places[0] if places else {}
    pos = F.position(first) if first else None
    closing = next((n.get("during") or {} for n in hs.get("notAvailable", ()) if n.get("during")), {})
    return [hs["id"], F.region_of(hs) or "", _join(i.get("value") for i in hs.get("identifier", ())),
            hs.get("name", ""), F.ref_id(hs.get("providedBy")), *activity, *champ, *care, *public,
            (ages.get("low") or {}).get("value", ""), (ages.get("high") or {}).get("value", ""), *category,
            _join(F.ref_id(x) for x in hs.get("location", ())), *(_commune(first) if first else ("", "")),
            pos[0] if pos else "", pos[1] if pos else "", _join(capacities(p) for p in places),
            closing.get("start", ""), closing.get("end", ""), (hs.get("meta") or {}).get("lastUpdated", "")]


def place_row(res: dict) -> list:
    def ident(code: str) -> str:
        return _join(i.get("value") for i in res.get("identifier", ()) if (F.first(i.get("type")) or {}).get(
            "code") == code)
    pos = F.position(res)
    function = _codes(F.codes_of(res.get("type")))
    residential = _join(f"{(F.value_coding(F.ext(r, 'residentialType')) or {}).get('code', '')}="
                        f"{(F.ext(r, 'residentialNumber') or {}).get('valueInteger', '')}"
                        for r in F.exts(res, F.RESIDENTIAL))
    return [res["id"], F.region_of(res) or "", ident("25"), ident("26"), res.get("name", ""), *_address(res),
            *_commune(res), pos[0] if pos else "", pos[1] if pos else "", *function, capacities(res), residential,
            _phones(res), (res.get("meta") or {}).get("lastUpdated", "")]
