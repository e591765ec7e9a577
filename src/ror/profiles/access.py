"""What each access profile (0–5) may see: the rules of the ROR "politique d'accès" (IG digest §6),
in one place, used three ways:

- ``row_mask`` — at write time, which profiles may see an index row (a capacity record, the
  helipad flag, a restricted characteristic), so that a search can only match what the profile
  could read: no inference of hidden values through a filter, and totals count what is visible;
- ``hidden_pks`` (in ``ror.search.visibility``) — at query time, the resources a profile must not
  see at all (sensitive offers and what hangs under them);
- ``redact`` — on output, the elements removed from a visible resource.

Profiles: 0 open data; 1 all; 2 all but "très restreint"; 3 medico-social offer all but "très
restreint", sanitary and city offer open data only; 4 all but contacts and personal data; 5 all
but "très restreint" and bed/place availability (installed capacity only).
"""

from __future__ import annotations

import copy

from ror.profiles.searchparams import ROR

PROFILES = range(6)
ALL = 0b111111


def mask(*profiles: int) -> int:
    out = 0
    for p in profiles:
        out |= 1 << p
    return out


def bit(profile: int) -> int:
    return 1 << profile


SENSITIVE = ROR + "ror-healthcareservice-sensitive-unit"
CAPACITY = ROR + "ror-location-supported-capacity"
CONTACT_HS = ROR + "ror-healthcareservice-contact"
ACT_TYPE = ROR + "ror-act-type"
ORSAN = ROR + "ror-organization-level-recours-orsan"
DROP_ZONE = ROR + "ror-organization-drop-zone"
CONFIDENTIALITY_URLS = (ROR + "ror-telecom-confidentiality-level", ROR + "ror-confidentiality-level",
                        ROR + "ror-contact-confidentiality-level", ROR + "ror-contact-telecom-confidentiality-level")
CHAMP_SYSTEM = "https://mos.esante.gouv.fr/NOS/TRE_R227-ChampActivite/FHIR/TRE-R227-ChampActivite"
CHAMP_MS, CHAMP_VILLE = "04", "05"
STATUS_INSTALLED, STATUS_ADDITIONAL = "01", "06"
# Characteristic slices restricted to profiles 1, 4, 5, 2 and (medico-social offers only) 3:
# specificAct / outsideOfficeAct (told by ror-act-type), takingCareSpeciality (TRE_R245),
# specificCompetence (TRE_R243), ressourceProfession (JDV_J186: TRE_G15, R94, R85, R95, R96, R356).
_RESTRICTED_TABLES = ("TRE_R245-", "TRE_R243-", "TRE_R210-", "TRE_G15-", "TRE_R94-", "TRE_R85-", "TRE_R95-",
                      "TRE_R96-", "TRE_R356-")

CAPACITY_ALL = mask(1, 2, 3, 4)
CAPACITY_INSTALLED = mask(1, 2, 3, 4, 5)
CAPACITY_ADDITIONAL = mask(1, 4)
ORSAN_HELIPAD = mask(1, 4)


def _codes(cc) -> list[tuple[str | None, str]]:
    if not isinstance(cc, dict):
        return []
    return [(c.get("system"), c.get("code")) for c in cc.get("coding", ()) if isinstance(c, dict)]


def sub_extension(ext: dict, url: str) -> dict | None:
    """The sub-extension ``url`` of a complex extension."""
    for e in ext.get("extension", ()):
        if isinstance(e, dict) and e.get("url") == url:
            return e
    return None


def _sub_code(ext: dict, url: str) -> str | None:
    e = sub_extension(ext, url)
    codes = _codes(e.get("valueCodeableConcept")) if e else []
    return codes[0][1] if codes else None


def champ(hs: dict) -> set[str]:
    return {code for cc in hs.get("type", ()) for system, code in _codes(cc) if system == CHAMP_SYSTEM}


def is_sensitive(hs: dict) -> bool:
    return any(isinstance(e, dict) and e.get("url") == SENSITIVE and e.get("valueBoolean") is True
               for e in hs.get("extension", ()))


def capacity_mask(capacity: dict) -> int:
    status = _sub_code(capacity, "capacityStatus")
    if status == STATUS_ADDITIONAL or sub_extension(capacity, "additionalBedType") is not None:
        return CAPACITY_ADDITIONAL
    return CAPACITY_INSTALLED if status == STATUS_INSTALLED else CAPACITY_ALL


def restricted_characteristic(cc: dict) -> bool:
    if any(isinstance(e, dict) and e.get("url") == ACT_TYPE for e in cc.get("extension", ())):
        return True
    return any(system and any(f"/{t}" in system for t in _RESTRICTED_TABLES) for system, _ in _codes(cc))


def characteristic_mask(hs: dict) -> int:
    """Restricted characteristics: 1, 2, 4, 5, and 3 when the offer is medico-social."""
    return mask(1, 2, 3, 4, 5) if CHAMP_MS in champ(hs) else mask(1, 2, 4, 5)


def row_mask(resource: dict, param_code: str, value, group: dict | None) -> int:
    """Profiles that may see an index row of ``param_code`` made from ``value`` (inside ``group``,
    the record extension instance it belongs to, if any)."""
    rtype = resource.get("resourceType")
    if group is not None and group.get("url") == CAPACITY:
        return capacity_mask(group)
    if rtype == "Organization" and param_code == "drop-zone":
        return ORSAN_HELIPAD
    if rtype == "HealthcareService" and param_code == "characteristic" and isinstance(value, dict) \
            and restricted_characteristic(value):
        return characteristic_mask(resource)
    return ALL


# How ``row_mask`` is decided for the rows of one parameter (``mask_rule``), so that the indexer asks
# once per parameter, not once per value: every row gets ``ALL`` or another fixed mask (an int), or
# the mask of its record (MASK_BY_GROUP: ``capacity_mask`` of the instance), or, per value,
# ``characteristic_value_mask`` (MASK_BY_CHARACTERISTIC).
MASK_BY_GROUP = "group"
MASK_BY_CHARACTERISTIC = "characteristic"


def mask_rule(rtype: str, param_code: str, group_url: str | None) -> int | str:
    """``row_mask`` for the rows of ``param_code`` on ``rtype`` read inside instances of the extension
    ``group_url`` (None: read on the resource), decided once; same rules in the same order."""
    if group_url == CAPACITY:
        return MASK_BY_GROUP
    if rtype == "Organization" and param_code == "drop-zone":
        return ORSAN_HELIPAD
    if rtype == "HealthcareService" and param_code == "characteristic":
        return MASK_BY_CHARACTERISTIC
    return ALL


def characteristic_value_mask(resource: dict, value) -> int:
    """``row_mask`` of a HealthcareService ``characteristic`` value."""
    if isinstance(value, dict) and restricted_characteristic(value):
        return characteristic_mask(resource)
    return ALL


# -- redaction of a visible resource -------------------------------------------------------------

def _confidentiality(node: dict) -> str | None:
    for e in node.get("extension", ()):
        if isinstance(e, dict) and e.get("url") in CONFIDENTIALITY_URLS:
            codes = _codes(e.get("valueCodeableConcept"))
            if codes:
                return codes[0][1]
    return None


def _contact_levels(profile: int, medico_social: bool) -> set[str]:
    """Confidentiality levels (TRE_R283: 1 public, 2 restricted, 3 very restricted) a profile sees."""
    if profile == 1:
        return {"1", "2", "3"}
    if profile in (2, 5):
        return {"1", "2"}
    if profile == 3:
        return {"1", "2"} if medico_social else {"1"}
    return {"1"}  # 0 and 4


def _keep_contacts(items: list, levels: set[str]) -> list:
    """Keep contacts / telecoms whose level is seen; inside a kept contact, filter its telecoms."""
    kept = []
    for item in items:
        if not isinstance(item, dict) or (_confidentiality(item) or "3") not in levels:
            continue  # no level = treated as very restricted: fail closed
        item = dict(item)
        if isinstance(item.get("telecom"), list):
            item["telecom"] = _keep_contacts(item["telecom"], levels)
            if not item["telecom"]:
                del item["telecom"]
        if isinstance(item.get("extension"), list):
            item["extension"] = [e for e in item["extension"] if not (
                isinstance(e, dict) and e.get("url") == ROR + "ror-healthcareservice-contact-telecom"
                and (_confidentiality(e) or "3") not in levels)]
        kept.append(item)
    return kept


def _filter_extensions(res: dict, keep) -> None:
    if isinstance(res.get("extension"), list):
        res["extension"] = [e for e in res["extension"] if keep(e)]
        if not res["extension"]:
            del res["extension"]


def _drop_empty(res: dict, *keys: str) -> None:
    for k in keys:
        if k in res and not res[k]:
            del res[k]


def redact(resource: dict, profile: int, context: dict | None = None) -> dict:
    """The resource as ``profile`` may see it. ``context`` carries facts from other resources:
    ``medico_social`` (a Location or PractitionerRole serving a medico-social offer)."""
    if profile == 1:
        return resource
    res = copy.copy(resource)
    rtype = res.get("resourceType")
    ms = bool((context or {}).get("medico_social"))
    if rtype == "HealthcareService":
        ms = CHAMP_MS in champ(res)
        if profile == 0 or (profile == 3 and not ms):
            res["characteristic"] = [cc for cc in res.get("characteristic", ())
                                     if not restricted_characteristic(cc)]
            _drop_empty(res, "characteristic")
        levels = _contact_levels(profile, ms)
        contacts = [e for e in res.get("extension", ()) if isinstance(e, dict) and e.get("url") == CONTACT_HS]
        if contacts:
            kept = _keep_contacts(contacts, levels)
            others = [e for e in res["extension"] if not (isinstance(e, dict) and e.get("url") == CONTACT_HS)]
            res["extension"] = others + kept
    elif rtype == "Location":
        if profile == 0 or (profile == 3 and not ms):
            _filter_extensions(res, lambda e: not (isinstance(e, dict) and e.get("url") == CAPACITY))
        else:
            _filter_extensions(res, lambda e: not (isinstance(e, dict) and e.get("url") == CAPACITY)
                               or bool(capacity_mask(e) & bit(profile)))
    elif rtype == "Organization":
        if profile not in (1, 4):
            _filter_extensions(res, lambda e: not (isinstance(e, dict) and e.get("url") in (ORSAN, DROP_ZONE)))
        if isinstance(res.get("contact"), list):
            res["contact"] = _keep_contacts(res["contact"], _contact_levels(profile, ms))
    levels = _contact_levels(profile, ms)
    if isinstance(res.get("telecom"), list):
        res["telecom"] = _keep_contacts(res["telecom"], levels)
    _drop_empty(res, "telecom", "contact")
    return res
