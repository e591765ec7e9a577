"""The CSD exposure-model files validate against the ROR v3.0 XSD (``IHE_ProfilCSD-ExtensionROR_fr-v3.0.xsd``)
and describe the same entities as the FHIR extract.

libxml2 cannot load that XSD as published: it imports ``xml.xsd`` and the XForms schema over the network and
references ``xs:schema`` inside ``careServicesFunction`` (a query-definition element of the CSD service,
never present in a data document). The test supplies local stand-ins for the two imports and turns that one
reference into an ``xs:any`` of the XML Schema namespace; every element a data document uses is untouched.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.generate.conftest import DATA

etree = pytest.importorskip("lxml.etree")
XSD = DATA / "IHE_ProfilCSD-ExtensionROR_fr-v3.0.xsd"
NS = "{urn:ihe:iti:csd:2013}"
XML_XSD = ('<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" '
           'targetNamespace="http://www.w3.org/XML/1998/namespace"><xs:attribute name="lang" type="xs:language"/>'
           '</xs:schema>')
XFORMS_XSD = ('<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="http://www.w3.org/2002/xforms">'
              '<xs:element name="instance" type="xs:anyType"/><xs:element name="bind" type="xs:anyType"/>'
              '<xs:simpleType name="anyURIList"><xs:list itemType="xs:anyURI"/></xs:simpleType></xs:schema>')


@pytest.fixture(scope="module")
def schema(tmp_path_factory):
    folder = tmp_path_factory.mktemp("xsd")
    (folder / "xml.xsd").write_text(XML_XSD)
    (folder / "xforms.xsd").write_text(XFORMS_XSD)
    text = (XSD.read_text("utf-8")
            .replace("http://www.w3.org/2001/xml.xsd", (folder / "xml.xsd").as_uri())
            .replace("http://www.w3.org/MarkUp/Forms/2002/XForms-Schema.xsd", (folder / "xforms.xsd").as_uri())
            .replace('<xs:element ref="xs:schema" minOccurs="0"/>',
                     '<xs:any namespace="http://www.w3.org/2001/XMLSchema" processContents="skip" minOccurs="0"/>'))
    (folder / "csd.xsd").write_text(text, encoding="utf-8")
    return etree.XMLSchema(etree.parse(str(folder / "csd.xsd")))


def test_every_region_file_validates(dataset, schema):
    files = sorted((dataset / "csd").glob("*.xml"))
    assert [f.name for f in files] == ["ror-csd-04.xml", "ror-csd-52.xml", "ror-csd-94.xml"]
    for f in files:
        assert schema.validate(etree.parse(str(f))), (f.name, [str(e) for e in list(schema.error_log)[:3]])


def test_the_validator_does_reject_a_broken_file(dataset, schema, tmp_path):
    text = (dataset / "csd" / "ror-csd-52.xml").read_text("utf-8")
    broken = tmp_path / "broken.xml"
    broken.write_text(text.replace("<careMode ", "<careModus ", 1), encoding="utf-8")
    assert not schema.validate(etree.parse(str(broken)))


def test_same_entities_as_the_fhir_extract(dataset, fhir):
    for region, types in fhir.items():
        root = etree.parse(str(dataset / "csd" / f"ror-csd-{region}.xml")).getroot()
        kinds = Counter(e.tag.removeprefix(NS) for directory in root for e in directory)
        # (only PractitionerRole lines are ever truncated, so these FHIR counts are complete)
        assert kinds["facility"] == kinds["service"] == len(types["HealthcareService"])
        assert kinds["organization"] == len(types["Organization"])
        assert kinds["provider"] == len(types["Practitioner"])
        ids = {e.get("entityID") for directory in root for e in directory}
        assert {o["id"] for o in types["Organization"]} <= ids
        assert {h["id"] for h in types["HealthcareService"]} <= ids


def test_capacities_are_carried(dataset):
    root = etree.parse(str(Path(dataset) / "csd" / "ror-csd-52.xml")).getroot()
    records = root.findall(f".//{NS}operationalAccommodationCapacity")
    assert records and all(r.find(f"{NS}capacityNumber") is not None for r in records)
