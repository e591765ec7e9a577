"""What the French health offer is made of, as frequencies: legal entities (EJ), their sites (EG) by FINESS
category, the internal organisation of hospitals (pôles, services), the offers of each kind of site with
their NOS codes (champ TRE_R227, activity TRE_R211, care mode TRE_R213, offer type TRE_R244, public
TRE_R239), bed/place capacities and the professionals attached to each offer.

Legal entities are drawn in proportion to ``Group.national`` until a region's resource budget is spent, so
these weights set the mix and the budget sets the totals (a national run draws about 1.3 times each weight).
They are assumptions calibrated on public orders of magnitude (FINESS: ~103,000 establishments of which
~22,000 pharmacies, ~7,500 EHPAD, ~1,350 public hospitals; DREES: ~230,000 physicians of whom ~100,000
salaried in hospitals, ~100,000 self-employed nurses, ~75,000 physiotherapists, ~37,000 dentists) and on the
volumes the national ROR is sized for (≈300k Organizations, 600k offers, 400k places with 1.5M capacity
records, 500k professionals, 900k roles). ``docs/generator.md`` gives the resulting counts. Every code is
checked against the NOS snapshot by the tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# --- offers ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Unit:
    """A kind of offer (HealthcareService): one offer per activity drawn, sharing one place (Location)."""

    key: str  # short tag, used in place external ids ("CARDIO-HC")
    name: str  # offer name
    champ: str  # TRE_R227
    category: str | None  # TRE_R244 (JDV_J238)
    mode: str  # TRE_R213 (JDV_J19)
    activities: tuple[tuple[str, float], ...]  # TRE_R211 code, probability of an offer for it
    capacity: tuple[int, int] | None = None  # installed beds or places; None: no capacity records
    nature: str = "01"  # TRE_R329: 01 lit, 02 place
    public: str = "07"  # TRE_R239
    ages: tuple[int, int] = (18, 150)
    staff: tuple[int, int] = (0, 0)  # professionals with a role in each offer
    profession: str = "10"  # TRE_G15 of those professionals
    specialty: str | None = None  # TRE_R38 (physicians)
    sensitive: bool = False
    reception: str | None = None  # TRE_R240
    opening: str | None = None  # TRE_R238
    mobile: bool = False  # intervention zone (communes)
    sector: bool = False  # psychiatric sector
    residential: bool = False  # housing capacity (TRE_R242)


def _acts(main: str, *extra: tuple[str, float]) -> tuple[tuple[str, float], ...]:
    return ((main, 1.0), *extra)


@dataclass(frozen=True, slots=True)
class Service:
    """A hospital service (OI type 2) with its units; ``tier`` 1 = in most hospitals, 3 = university only."""

    name: str
    pole: str
    tier: int
    units: tuple[tuple[Unit, float], ...]


def _mco(key: str, label: str, acts, category: str, spe: str, beds: tuple[int, int], *, tier: int = 1,
         pole: str = "Médecine", surgical: bool = False, intensive: Unit | None = None,
         ages: tuple[int, int] = (18, 150), hj: float = 0.8) -> Service:
    """The usual units of an acute-care specialty: full and week hospitalisation, day hospital (or day
    surgery), consultations, specialist advice inside the hospital, tele-expertise, and an intensive-care
    unit when the specialty has one."""
    common = dict(ages=ages, specialty=spe)
    units = [
        (Unit(f"{key}-HC", f"{label} - hospitalisation complète", "01", category, "28", acts, beds, staff=(1, 3),
              opening="03", **common), 1.0),
        (Unit(f"{key}-HS", f"{label} - hospitalisation de semaine", "01", category, "34", acts[:3], (6, 12),
              staff=(1, 3), opening="01", **common), 0.25),
        (Unit(f"{key}-HJ", f"{label} - {'chirurgie ambulatoire' if surgical else 'hôpital de jour'}", "01", category,
              "09" if surgical else "29", acts[:3], (4, 12), "02", staff=(1, 3), opening="01", **common), hj),
        (Unit(f"{key}-CS", f"Consultations de {label.lower()}", "01", "294", "32", acts, staff=(1, 4), **common), 0.95),
        (Unit(f"{key}-AVIS", f"{label} - avis spécialisé intra-hospitalier", "01", category, "52", acts[:2],
              staff=(1, 3), **common), 0.5),
        (Unit(f"{key}-TLE", f"{label} - téléexpertise", "01", category, "35", acts[:1], staff=(1, 2), **common), 0.35),
    ]
    if intensive:
        units.append((intensive, 0.7))
    return Service(f"Service de {label.lower()}", "Chirurgie" if surgical else pole, tier, tuple(units))


MCO_SERVICES = (
    _mco("CARDIO", "Cardiologie",
         _acts("013", ("132", 0.6), ("014", 0.5), ("344", 0.5), ("133", 0.3), ("148", 0.2), ("336", 0.3)), "149",
         "SM04", (20, 40),
         intensive=Unit("USIC", "Unité de soins intensifs de cardiologie (USIC)", "01", "262", "28", _acts("354"),
                        (6, 12), staff=(2, 4), specialty="SM04", opening="03")),
    _mco("PNEUMO", "Pneumologie",
         _acts("114", ("431", 0.5), ("343", 0.5), ("193", 0.4), ("139", 0.3), ("451", 0.3), ("336", 0.2)), "163",
         "SM41", (20, 35)),
    _mco("HGE", "Hépato-gastro-entérologie",
         _acts("046", ("062", 0.6), ("348", 0.5), ("117", 0.3), ("189", 0.4), ("336", 0.2)), "170", "SM24", (20, 35)),
    _mco("NEURO", "Neurologie", _acts("097", ("098", 0.6), ("346", 0.5), ("186", 0.2), ("480", 0.2), ("250", 0.2)),
         "161", "SM32", (20, 35), tier=2,
         intensive=Unit("USINV", "Unité neuro-vasculaire - soins intensifs (USINV)", "01", "263", "28", _acts("356"),
                        (4, 10), staff=(2, 4), specialty="SM32", opening="03")),
    _mco("NEPHRO", "Néphrologie", _acts("095", ("059", 0.7), ("058", 0.3), ("506", 0.1), ("336", 0.3)), "159", "SM30",
         (12, 25), tier=2),
    _mco("ENDOC", "Endocrinologie-diabétologie",
         _acts("041", ("039", 0.8), ("040", 0.5), ("099", 0.4), ("409", 0.2), ("336", 0.5)), "167", "SM62", (10, 20),
         tier=2),
    _mco("ONCO", "Oncologie médicale",
         _acts("102", ("164", 0.9), ("414", 0.6), ("413", 0.3), ("412", 0.2), ("187", 0.3), ("221", 0.4)), "171",
         "SM36", (15, 30), tier=2),
    _mco("HEMATO", "Hématologie clinique", _acts("055", ("191", 0.6), ("164", 0.4), ("205", 0.3)), "169", "SM21",
         (10, 25), tier=3),
    _mco("RHUMATO", "Rhumatologie", _acts("131", ("457", 0.2), ("336", 0.2)), "165", "SM48", (10, 20), tier=2),
    _mco("DERMATO", "Dermatologie", _acts("037", ("280", 0.4), ("188", 0.4), ("162", 0.2)), "154", "SM15", (6, 15),
         tier=3, hj=0.6),
    _mco("MI", "Médecine interne", _acts("085", ("073", 0.4), ("077", 0.2)), "176", "SM27", (20, 30), tier=2),
    _mco("MIT", "Maladies infectieuses et tropicales", _acts("077", ("162", 0.4), ("161", 0.4)), "168", "SM58",
         (10, 25), tier=3),
    _mco("GERIA", "Médecine gériatrique", _acts("491", ("050", 0.7), ("187", 0.2), ("452", 0.3)), "156", "SM18",
         (20, 40), ages=(75, 150)),
    _mco("MEDPOLY", "Médecine polyvalente", _acts("083", ("437", 0.2), ("085", 0.2)), "238", "SM54", (20, 40), hj=0.4),
    _mco("PEDIA", "Pédiatrie", _acts("088", ("453", 0.4), ("279", 0.15), ("182", 0.15)), "162", "SM40", (15, 30),
         ages=(0, 18), pole="Femme-Enfant"),
    _mco("ORTHO", "Chirurgie orthopédique et traumatologique",
         _acts("025", ("145", 0.6), ("436", 0.4), ("467", 0.4), ("468", 0.4), ("469", 0.3), ("509", 0.2)), "150",
         "SM08", (20, 40), surgical=True),
    _mco("VISC", "Chirurgie viscérale et digestive", _acts("033", ("017", 0.5), ("474", 0.4), ("117", 0.3)), "153",
         "SM14", (20, 35), surgical=True),
    _mco("URO", "Urologie", _acts("031", ("196", 0.4), ("349", 0.4)), "234", "SM12", (12, 25), surgical=True, tier=2),
    _mco("ORL", "Oto-rhino-laryngologie", _acts("016", ("473", 0.4), ("347", 0.4), ("476", 0.3), ("478", 0.2)), "173",
         "SM34", (8, 20), surgical=True, tier=2),
    _mco("OPHTA", "Ophtalmologie", _acts("103", ("350", 0.5), ("154", 0.3), ("106", 0.3)), "172", "SM38", (4, 12),
         surgical=True, tier=2),
    _mco("VASC", "Chirurgie vasculaire", _acts("032", ("466", 0.5), ("091", 0.4), ("345", 0.4)), "152", "SM13",
         (10, 20), surgical=True, tier=2),
    _mco("NCHIR", "Neurochirurgie", _acts("096", ("436", 0.6), ("440", 0.5), ("184", 0.3), ("183", 0.2)), "160", "SM31",
         (15, 30), surgical=True, tier=3),
    _mco("CTCV", "Chirurgie thoracique et cardio-vasculaire", _acts("018", ("030", 0.8), ("123", 0.3)), "151", "SM11",
         (12, 25), surgical=True, tier=3),
    _mco("PLAST", "Chirurgie plastique et reconstructrice", _acts("177", ("178", 0.6), ("175", 0.3)), "242", "SM10",
         (8, 15), surgical=True, tier=3),
    _mco("STOMATO", "Chirurgie maxillo-faciale et stomatologie", _acts("023", ("137", 0.6), ("199", 0.4)), "166",
         "SM07", (6, 15), surgical=True, tier=3),
    _mco("GYN", "Gynécologie", _acts("022", ("053", 0.6), ("105", 0.5), ("190", 0.4), ("510", 0.4), ("080", 0.2)),
         "157", "SM20", (10, 25), surgical=True, pole="Femme-Enfant"),
    Service("Maternité", "Femme-Enfant", 1,
            ((Unit("OBST", "Maternité - obstétrique", "01", "290", "28", _acts("100", ("282", 0.5)), (15, 40),
                   ages=(12, 55), staff=(2, 6), specialty="SM20", opening="03"), 1.0),
             (Unit("GHR", "Grossesses pathologiques", "01", "293", "28", _acts("100"), (6, 15), ages=(12, 55),
                   staff=(1, 3), specialty="SM20", opening="03"), 0.4),
             (Unit("NEONAT", "Néonatologie", "01", "289", "28", _acts("094"), (6, 15), ages=(0, 1), staff=(2, 4),
                   specialty="SM40", opening="03"), 0.7),
             (Unit("REANEO", "Réanimation néonatale", "01", "287", "28", _acts("128"), (6, 12), ages=(0, 1),
                   staff=(2, 4), specialty="SM40", opening="03"), 0.25))),
    Service("Service d'accueil des urgences", "Urgences", 1,
            ((Unit("SU", "Structure des urgences", "01", "20", "33", _acts("157", ("160", 0.5), ("159", 0.3)),
                   staff=(3, 8), specialty="SM59", opening="03"), 1.0),
             (Unit("UHCD", "Unité d'hospitalisation de courte durée (UHCD)", "01", "278", "13", _acts("115"), (6, 14),
                   staff=(1, 3), specialty="SM59", opening="03"), 0.8),
             (Unit("SMUR", "SMUR", "01", "247", "59", _acts("136", ("268", 0.5)), staff=(2, 6), specialty="SM59",
                   opening="03", mobile=True), 0.7),
             (Unit("SUP", "Urgences pédiatriques", "01", "311", "33", _acts("249"), ages=(0, 18), staff=(2, 5),
                   specialty="SM40", opening="03"), 0.3))),
    Service("Service de réanimation", "Anesthésie-Réanimation", 1,
            ((Unit("REA", "Réanimation polyvalente", "01", "121", "28", _acts("127", ("126", 0.2)), (8, 20),
                   staff=(3, 6), specialty="SM46", opening="03"), 1.0),
             (Unit("USC", "Unité de surveillance continue", "01", "254", "28", _acts("373"), (6, 12), staff=(2, 4),
                   specialty="SM02", opening="03"), 0.7),
             (Unit("ANESTH", "Consultations d'anesthésie", "01", "237", "32", _acts("007", ("138", 0.6)), staff=(2, 6),
                   specialty="SM02"), 0.9))),
    Service(
        "Service d'imagerie médicale",
        "Médico-technique",
        1,
        ((Unit("IMAG", "Imagerie médicale", "01", "164", "55",
               _acts("454", ("070", 0.7), ("068", 0.6), ("067", 0.6), ("504", 0.3)), staff=(2, 6),
               specialty="SM44"), 1.0),
         (Unit("MEDNUC", "Médecine nucléaire", "01", "239", "55", _acts("087", ("169", 0.6)), staff=(1, 3),
               specialty="SM28"), 0.2)),
    ),
    Service("Pharmacie à usage intérieur", "Médico-technique", 1,
            ((Unit("PUI", "Pharmacie à usage intérieur", "01", "82", "55", _acts("397", ("398", 0.5), ("400", 0.4))),
              1.0),)),
    Service("Unité de soins palliatifs", "Médecine", 2,
            ((Unit("USP", "Unité de soins palliatifs", "01", "175", "28", _acts("170"), (8, 12), staff=(1, 3),
                   specialty="SM54", opening="03"), 1.0),
             (Unit("EMSP", "Équipe mobile de soins palliatifs", "01", None, "52", _acts("170"), staff=(1, 2),
                   specialty="SM54"), 0.8))),
    Service("Addictologie", "Médecine", 2,
            ((Unit("ADDICTO", "Addictologie - sevrage complexe", "01", "145", "28", _acts("404", ("003", 0.5)),
                   (6, 15), public="04", staff=(1, 3), specialty="SM54"), 0.7),
             (Unit("ELSA", "Équipe de liaison et de soins en addictologie (ELSA)", "01", "272", "52", _acts("404"),
                   public="04", staff=(1, 2), specialty="SM54"), 1.0))),
)

PSY_SERVICES = (
    Service("Psychiatrie générale", "Psychiatrie", 1,
            ((Unit("PSY-HC", "Psychiatrie adulte - hospitalisation complète", "03", "174", "28", _acts("229"),
                   (20, 30), staff=(2, 5), specialty="SM42", sensitive=True, sector=True, opening="03"), 1.0),
             (Unit("PSY-HJ", "Psychiatrie adulte - hôpital de jour", "03", "11", "29", _acts("229", ("231", 0.3)),
                   (10, 20), "02", staff=(1, 3), specialty="SM42", sensitive=True, sector=True, opening="01"), 0.8),
             (Unit("PSY-URG", "Urgences psychiatriques", "03", "301", "33", _acts("158"), staff=(1, 3),
                   specialty="SM42", sensitive=True, opening="03"), 0.4),
             (Unit("EMPP", "Équipe mobile psychiatrie précarité (EMPP)", "03", "77", "11", _acts("229"), public="06",
                   staff=(1, 2), specialty="SM42", sensitive=True, mobile=True), 0.3))),
    Service(
        "Pédopsychiatrie",
        "Psychiatrie",
        2,
        ((Unit("PEDOPSY-HC", "Pédopsychiatrie - hospitalisation complète", "03", "282", "28",
               _acts("227", ("228", 0.4)), (8, 15), ages=(3, 18), staff=(1, 3), specialty="SM43", sensitive=True,
               sector=True), 1.0),
         (Unit("PEDOPSY-HJ", "Pédopsychiatrie - hôpital de jour", "03", "11", "29", _acts("227"), (8, 15), "02",
               ages=(3, 18), staff=(1, 2), specialty="SM43", sensitive=True, sector=True), 0.8)),
    ),
)

SMR_SERVICES = (
    Service("SMR polyvalent", "Gériatrie-SMR", 1,
            ((Unit("SMR-HC", "SMR polyvalent - hospitalisation complète", "02", "100", "28", _acts("172"), (20, 40),
                   staff=(1, 3), specialty="SM54", opening="03"), 1.0),
             (Unit("SMR-HJ", "SMR polyvalent - hôpital de jour", "02", "100", "29", _acts("172"), (5, 12), "02",
                   staff=(1, 2), specialty="SM29"), 0.4))),
    Service("SMR gériatrique", "Gériatrie-SMR", 1,
            ((Unit("SMRG-HC", "SMR gériatrique", "02", "101", "28", _acts("241"), (20, 40), ages=(75, 150),
                   staff=(1, 3), specialty="SM18", opening="03"), 1.0),)),
    Service("SMR locomoteur", "Gériatrie-SMR", 2,
            ((Unit("SMRL-HC", "SMR locomoteur - hospitalisation complète", "02", "102", "28",
                   _acts("233", ("291", 0.5)), (15, 35), staff=(1, 3), specialty="SM29", opening="03"), 1.0),
             (Unit("SMRL-HJ", "SMR locomoteur - hôpital de jour", "02", "102", "29", _acts("233"), (6, 15), "02",
                   staff=(1, 2), specialty="SM29"), 0.6))),
    Service("SMR système nerveux", "Gériatrie-SMR", 2,
            ((Unit("SMRN-HC", "SMR neurologique", "02", "103", "28", _acts("234", ("292", 0.5)), (15, 30),
                   staff=(1, 3), specialty="SM29", opening="03"), 1.0),)),
    Service("SMR cardio-vasculaire", "Gériatrie-SMR", 3,
            ((Unit("SMRC-HC", "SMR cardio-vasculaire", "02", "104", "28", _acts("235"), (15, 30), staff=(1, 2),
                   specialty="SM04", opening="03"), 1.0),)),
    Service("SMR respiratoire", "Gériatrie-SMR", 3,
            ((Unit("SMRR-HC", "SMR respiratoire", "02", "105", "28", _acts("236"), (15, 30), staff=(1, 2),
                   specialty="SM41", opening="03"), 1.0),)),
)

USLD = Service("Unité de soins de longue durée", "Gériatrie-SMR", 1,
               ((Unit("USLD", "Unité de soins de longue durée (USLD)", "01", "249", "28", _acts("333"), (30, 80),
                      ages=(60, 150), staff=(1, 2), specialty="SM18", opening="03", residential=True), 1.0),))

# Units of sites that have no internal organisation (offers provided directly by the EG).
CMP = ((Unit("CMP", "Centre médico-psychologique adulte", "03", "10", "32", _acts("229", ("289", 0.4)), staff=(1, 3),
             specialty="SM42", sensitive=True, sector=True), 0.8),
       (Unit("CMPEA", "Centre médico-psychologique enfants et adolescents", "03", "281", "32", _acts("227"),
             ages=(0, 18), staff=(1, 2), specialty="SM43", sensitive=True, sector=True), 0.4))
CATTP = ((Unit("CATTP", "CATTP", "03", "05", "42", _acts("229", ("231", 0.4)), staff=(0, 1), specialty="SM42",
               sensitive=True, sector=True), 1.0),)
DIALYSIS = ((Unit("DIAL-C", "Hémodialyse en centre", "01", "274", "20", _acts("059"), (10, 30), "02", staff=(1, 3),
                  specialty="SM30"), 0.6),
            (Unit("UDM", "Unité de dialyse médicalisée", "01", "275", "20", _acts("059"), (6, 16), "02", staff=(1, 2),
                  specialty="SM30"), 0.5),
            (Unit("UAD", "Autodialyse assistée", "01", "273", "20", _acts("059"), (6, 12), "02"), 0.6))
HAD = ((Unit("HAD", "Hospitalisation à domicile", "01", "128", "31", _acts("285", ("170", 0.5), ("287", 0.5)), (20, 80),
             "02", staff=(1, 3), specialty="SM54", mobile=True, opening="03"), 1.0),
       (Unit("HAD-RE", "HAD de réadaptation", "02", "130", "31", _acts("283"), (5, 20), "02", staff=(0, 1),
             specialty="SM29", mobile=True), 0.3))
_EHPAD_PUBLIC = dict(public="01", ages=(60, 150))
EHPAD = (
    (Unit("HP", "Hébergement permanent", "04", "21", "46",
          _acts("293", ("285", 0.7), ("322", 0.6), ("323", 0.5), ("313", 0.6), ("314", 0.3), ("306", 0.4),
                ("312", 0.4)), (40, 110), "02", staff=(0, 1), specialty="SM18", reception="02", opening="03",
          residential=True, **_EHPAD_PUBLIC), 1.0),
    (Unit("HT", "Hébergement temporaire", "04", "21", "46", _acts("293", ("393", 0.3), ("285", 0.5), ("313", 0.4)),
          (2, 8), "02", reception="01", opening="03", **_EHPAD_PUBLIC), 0.55),
    (Unit("UVP", "Unité de vie protégée", "04", "24", "46", _acts("293", ("306", 0.7), ("285", 0.5), ("297", 0.4)),
          (10, 24), "02", reception="02", opening="03", **_EHPAD_PUBLIC), 0.45),
    (Unit("PASA", "Pôle d'activités et de soins adaptés (PASA)", "04", "25", "47",
          _acts("306", ("313", 0.6), ("314", 0.4)), (12, 14), "02", opening="01", **_EHPAD_PUBLIC), 0.3),
    (Unit("AJ", "Accueil de jour", "04", "21", "47", _acts("306", ("325", 0.6), ("313", 0.5), ("324", 0.4)), (6, 15),
          "02", reception="01", opening="01", **_EHPAD_PUBLIC), 0.3),
)
RESIDENCE = ((Unit("RA", "Résidence autonomie", "04", "22", "46",
                   _acts("298", ("312", 0.6), ("322", 0.5), ("313", 0.5), ("297", 0.3)), (20, 80), "02", public="03",
                   ages=(60, 150), reception="02", opening="03", residential=True), 1.0),)
SSIAD = ((Unit("SSIAD", "Service de soins infirmiers à domicile", "04", "28", "49",
               _acts("288", ("287", 0.6), ("293", 0.4), ("340", 0.3)), (20, 90), "02", public="01", ages=(60, 150),
               staff=(0, 1), profession="60", mobile=True), 1.0),
         (Unit("SSIAD-PH", "SSIAD personnes handicapées", "04", "28", "49", _acts("288"), (5, 15), "02", public="02",
               ages=(18, 60), mobile=True), 0.3),
         (Unit("ESA", "Équipe spécialisée Alzheimer (ESA)", "04", "29", "49", _acts("306"), public="01", ages=(60, 150),
               mobile=True), 0.25))
HOME_HELP = ((Unit("SAD", "Service autonomie à domicile", "04", "30", "49",
                   _acts("293", ("299", 0.7), ("298", 0.3), ("312", 0.3), ("341", 0.3)), public="01", ages=(60, 150),
                   mobile=True), 1.0),
             (Unit("SAD-PH", "Aide à domicile - personnes handicapées", "04", "30", "49", _acts("293"), public="02",
                   ages=(18, 60), mobile=True), 0.4))
_PH_CHILD = dict(public="02", ages=(6, 20))
_PH_ADULT = dict(public="02", ages=(20, 60))
IME = (
    (Unit("IME-INT", "IME - internat", "04", "48", "46",
          _acts("300", ("293", 0.6), ("294", 0.5), ("295", 0.5), ("290", 0.4), ("291", 0.4), ("313", 0.4)), (10, 40),
          "02", **_PH_CHILD), 0.6),
    (Unit("IME-SI", "IME - semi-internat", "04", "48", "47",
          _acts("300", ("294", 0.5), ("295", 0.5), ("290", 0.4), ("289", 0.4), ("313", 0.3)), (20, 60), "02",
          **_PH_CHILD), 1.0),
)
ITEP = ((Unit("ITEP", "ITEP", "04", "50", "47", _acts("300", ("295", 0.7), ("289", 0.5), ("308", 0.3)), (20, 50), "02",
              **_PH_CHILD), 1.0),)
EEAP = ((Unit("EEAP", "Établissement pour enfants polyhandicapés", "04", "51", "46",
              _acts("293", ("285", 0.7), ("291", 0.5), ("294", 0.5)), (10, 30), "02", public="02", ages=(0, 20)), 1.0),)
SESSAD = (
    (Unit("SESSAD", "SESSAD", "04", "57", "49", _acts("300", ("291", 0.5), ("290", 0.5), ("289", 0.4), ("449", 0.4)),
          (15, 60), "02", public="02", ages=(0, 20), mobile=True), 1.0),
)
CAMSP = ((Unit("CAMSP", "CAMSP", "04", "61", "32", _acts("448", ("290", 0.5)), public="02", ages=(0, 6), staff=(0, 1),
               specialty="SM40"), 1.0),)
CMPP = ((Unit("CMPP", "CMPP", "04", "62", "32", _acts("289", ("290", 0.5)), public="02", ages=(0, 20), staff=(0, 1),
              specialty="SM43"), 1.0),)
ESAT = ((Unit("ESAT", "ESAT", "04", "43", "47", _acts("304", ("305", 0.6), ("302", 0.4), ("313", 0.3), ("303", 0.2)),
              (30, 120), "02", **_PH_ADULT), 1.0),)
EAM = ((Unit("EAM", "Établissement d'accueil médicalisé", "04", "39", "46",
             _acts("293", ("285", 0.6), ("312", 0.5), ("313", 0.5), ("291", 0.3)), (20, 50), "02", public="02",
             ages=(20, 150), residential=True), 1.0),
       (Unit("EAM-AJ", "Accueil de jour EAM", "04", "39", "47", _acts("313"), (3, 8), "02", public="02",
             ages=(20, 150)), 0.3))
MAS = ((Unit("MAS", "Maison d'accueil spécialisée", "04", "40", "46",
             _acts("293", ("285", 0.8), ("291", 0.5), ("294", 0.5), ("314", 0.3)), (20, 60), "02", public="02",
             ages=(20, 150), staff=(0, 1), specialty="SM54", residential=True), 1.0),)
EANM_LIFE = (
    (Unit("FV", "Foyer de vie", "04", "97", "46", _acts("312", ("313", 0.7), ("298", 0.5), ("299", 0.4)), (15, 45),
          "02", public="02", ages=(20, 150), residential=True), 1.0),
)
EANM_HOME = (
    (Unit("FH", "Foyer d'hébergement", "04", "96", "46", _acts("298", ("299", 0.5), ("312", 0.5), ("318", 0.3)),
          (15, 40), "02", **_PH_ADULT), 1.0),
)
SAVS = ((Unit("SAVS", "SAVS", "04", "31", "49", _acts("312", ("298", 0.6), ("317", 0.4), ("318", 0.3)), (20, 60), "02",
              mobile=True, **_PH_ADULT), 1.0),)
SAMSAH = ((Unit("SAMSAH", "SAMSAH", "04", "32", "49", _acts("285", ("312", 0.6), ("298", 0.4), ("291", 0.3)), (15, 40),
                "02", mobile=True, **_PH_ADULT), 1.0),)
CSAPA = (
    (Unit("CSAPA", "CSAPA", "04", "80", "32", _acts("404", ("450", 0.6), ("001", 0.3)), public="04", staff=(0, 2),
          specialty="SM54"), 1.0),
    (Unit("CJC", "Consultation jeunes consommateurs", "04", "86", "32", _acts("404"), public="04", ages=(12, 25)), 0.5),
)

# City practice: one offer per profession (and specialty) present in the practice.


def _city(key: str, name: str, category: str, act: str, profession: str, specialty: str | None = None,
          ages: tuple[int, int] = (0, 150), sensitive: bool = False) -> Unit:
    return Unit(key, name, "05", category, "32", _acts(act), profession=profession, specialty=specialty, ages=ages,
                sensitive=sensitive)


# (unit, weight among self-employed professionals): DREES 2023 orders of magnitude, in thousands.
CITY_UNITS = ((_city("MG", "Médecine générale", "196", "437", "10", "SM54"), 55),
              (_city("IDE", "Soins infirmiers", "225", "287", "60"), 100),
              (_city("MK", "Kinésithérapie", "195", "339", "70"), 75),
              (_city("CD", "Chirurgie dentaire", "226", "442", "40"), 37),
              (_city("SF", "Suivi de grossesse - sage-femme", "213", "282", "50", ages=(12, 55)), 8),
              (_city("PP", "Pédicurie-podologie", "206", "201", "80"), 14),
              (_city("ORTHOPH", "Orthophonie", "222", "200", "91"), 22),
              (_city("ORTHOPT", "Orthoptie", "223", "106", "92"), 5),
              (_city("CARDIO", "Cardiologie", "183", "013", "10", "SM04"), 4.5),
              (_city("DERMATO", "Dermatologie", "190", "037", "10", "SM15"), 3),
              (_city("OPHTA", "Ophtalmologie", "221", "103", "10", "SM38"), 5),
              (_city("PEDIA", "Pédiatrie", "205", "088", "10", "SM40", ages=(0, 18)), 3),
              (_city("GYNECO", "Gynécologie", "194", "053", "10", "SM19"), 4),
              (_city("PSY", "Psychiatrie", "208", "229", "10", "SM42", sensitive=True), 5),
              (_city("ORL", "Oto-rhino-laryngologie", "179", "016", "10", "SM34"), 2.5),
              (_city("RHUMATO", "Rhumatologie", "212", "131", "10", "SM48"), 1.8),
              (_city("RADIO", "Radiologie", "211", "454", "10", "SM44"), 6),
              (_city("HGE", "Gastro-entérologie", "219", "046", "10", "SM24"), 2.5),
              (_city("PNEUMO", "Pneumologie", "207", "114", "10", "SM41"), 1.5),
              (_city("ENDOC", "Endocrinologie", "215", "041", "10", "SM62"), 1.2))
# Extra city offers a practice may publish besides one per profession.
CITY_EXTRA = ((Unit("SNP", "Soins non programmés", "05", "92", "56", _acts("475"), ages=(0, 150), profession="10",
                    specialty="SM54"), "MG", 0.15),
              (Unit("VAD", "Soins infirmiers à domicile", "05", "225", "49", _acts("287", ("288", 0.5)), ages=(0, 150),
                    profession="60", mobile=True), "IDE", 0.35),
              (Unit("TLC", "Téléconsultation", "05", "196", "32", _acts("437"), ages=(0, 150), profession="10",
                    specialty="SM54"), "MG", 0.08))


# --- sites and legal entities --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SiteKind:
    """A kind of establishment (EG): FINESS category, funding, and what it offers."""

    key: str
    category: str  # TRE_R66 code, or TRE_R02 SA07/SA08/SA09 for city practices
    name: str  # pattern: {city} {home} {clinic} {surname}
    short: str  # FINESS ``rs`` pattern (38 characters at most)
    ape: str  # NAF code
    mft: str = ""  # TRE_R74
    sph: str = ""  # TRE_R73
    tiers: tuple[float, float, float] | None = None  # presence of MCO services by tier; None: no MCO
    surgical_only: bool = False
    psy: float = 0.0  # presence of each psychiatry service
    smr: tuple[float, float, float] = (0.0, 0.0, 0.0)
    usld: float = 0.0
    units: tuple[tuple[Unit, float], ...] = ()
    urban: bool = False
    drop_zone: float = 0.0
    prices: bool = False
    city: str = ""  # "" (not a city practice) | individual | group | society | msp | cds
    in_ror: bool = True


@dataclass(frozen=True, slots=True)
class Group:
    """A kind of legal entity (EJ) and the sites (EG) it runs."""

    key: str
    national: int  # mixture weight: relative number of such EJs nationally
    statuts: tuple[tuple[str, float], ...]  # TRE_R72 with weights
    name: str
    sites: tuple[tuple[SiteKind, tuple[int, int], float], ...]  # kind, count range, probability
    finess: bool = True  # the EJ is a FINESS legal entity
    shared: float = 0.0  # share of EJs that are multi-region groups
    in_ror: bool = True
    ape: str = ""
    ej_category: str = ""  # ``categetab`` printed on the EJ record
    offers: tuple[tuple[Unit, float], ...] = field(default=())  # offers provided by the EJ itself


CHR = SiteKind("chr", "101", "CHU de {city} - Hôpital {saint}", "CHU {CITY} {SAINT}", "8610Z", "03", "1",
               tiers=(1.0, 0.95, 0.85), psy=0.7, smr=(0.6, 0.4, 0.3), urban=True, drop_zone=0.9)
CHR_SITE = SiteKind("chr_site", "355", "CHU de {city} - Site {saint}", "CHU {CITY} SITE {SAINT}", "8610Z", "03", "1",
                    tiers=(0.45, 0.3, 0.15), psy=0.3, smr=(0.5, 0.3, 0.1), usld=0.3, urban=True)
CH = SiteKind("ch", "355", "Centre hospitalier de {city}", "CH DE {CITY}", "8610Z", "03", "1", tiers=(0.9, 0.55, 0.1),
              psy=0.35, smr=(0.7, 0.2, 0.05), usld=0.4, urban=True, drop_zone=0.5)
HL = SiteKind("hl", "106", "Centre hospitalier de {city}", "CH {CITY}", "8610Z", "03", "1", tiers=(0.0, 0.0, 0.0),
              smr=(0.9, 0.3, 0.0), usld=0.5, units=((MCO_SERVICES[13].units[0][0], 0.8),))
CHS = SiteKind("chs", "292", "Centre hospitalier spécialisé {saint}", "CHS {SAINT}", "8610Z", "03", "1", psy=1.0,
               units=(*CMP, (PSY_SERVICES[0].units[3][0], 0.6)), urban=True)
CLCC = SiteKind("clcc", "131", "Centre de lutte contre le cancer {clinic}", "CLCC {CLINIC}", "8610Z", "04", "6",
                tiers=(0.0, 0.0, 0.0),
                units=(*((u, 1.0) for u, _ in MCO_SERVICES[6].units), *((u, 0.8) for u, _ in MCO_SERVICES[7].units)),
                urban=True)
CLINIC = SiteKind("clinic", "365", "Clinique {clinic}", "CLINIQUE {CLINIC}", "8610Z", "07", "0",
                  tiers=(0.55, 0.3, 0.05), surgical_only=True, urban=True)
CLINIC_MED = SiteKind("clinic_med", "129", "Clinique médicale {clinic}", "CLINIQUE MEDICALE {CLINIC}", "8610Z", "07",
                      "0", tiers=(0.3, 0.1, 0.0), smr=(0.5, 0.2, 0.0), urban=True)
CLINIC_ESPIC = SiteKind("espic", "365", "Hôpital privé {clinic}", "HOPITAL PRIVE {CLINIC}", "8610Z", "04", "6",
                        tiers=(0.7, 0.35, 0.05), smr=(0.4, 0.2, 0.0), urban=True)
SMR = SiteKind(
    "smr", "109", "Centre de rééducation {home}", "CENTRE REEDUCATION {HOME}", "8610Z", "07", "0", smr=(0.9, 0.5, 0.25)
)
PSY_PRIV = SiteKind(
    "psy_priv", "161", "Clinique psychiatrique {clinic}", "CLINIQUE PSY {CLINIC}", "8610Z", "07", "0", psy=0.8
)
CMP_SITE = SiteKind("cmp", "156", "CMP de {city}", "CMP {CITY}", "8610Z", "03", "1", units=CMP)
CATTP_SITE = SiteKind("cattp", "425", "CATTP de {city}", "CATTP {CITY}", "8610Z", "03", "1", units=CATTP)
DIALYSIS_SITE = SiteKind(
    "dialysis", "141", "Centre de dialyse de {city}", "CENTRE DIALYSE {CITY}", "8610Z", "07", "0", units=DIALYSIS
)
AUTODIALYSIS = SiteKind("autodialysis", "146", "Unité d'autodialyse de {city}", "AUTODIALYSE {CITY}", "8610Z", "07",
                        "0", units=((DIALYSIS[2][0], 1.0),))
HAD_SITE = SiteKind("had", "127", "HAD {home}", "HAD {HOME}", "8610Z", "07", "0", units=HAD)
USLD_SITE = SiteKind("usld", "362", "USLD de {city}", "USLD {CITY}", "8710A", "03", "1", units=USLD.units)
EHPAD_SITE = SiteKind("ehpad", "500", "EHPAD {home}", "EHPAD {HOME}", "8710A", "40", units=EHPAD, prices=True)
RESIDENCE_SITE = SiteKind("residence", "202", "Résidence autonomie {home}", "RESIDENCE AUTONOMIE {HOME}", "8730A", "08",
                          units=RESIDENCE, prices=True)
SSIAD_SITE = SiteKind("ssiad", "354", "SSIAD de {city}", "SSIAD {CITY}", "8810A", "54", units=SSIAD)
SAD_SITE = SiteKind(
    "sad", "460", "Service autonomie à domicile de {city}", "SAD {CITY}", "8810A", "08", units=HOME_HELP
)
IME_SITE = SiteKind("ime", "183", "IME {home}", "IME {HOME}", "8891A", "34", units=IME)
ITEP_SITE = SiteKind("itep", "186", "ITEP {home}", "ITEP {HOME}", "8891A", "34", units=ITEP)
EEAP_SITE = SiteKind("eeap", "188", "EEAP {home}", "EEAP {HOME}", "8891A", "34", units=EEAP)
SESSAD_SITE = SiteKind("sessad", "182", "SESSAD de {city}", "SESSAD {CITY}", "8891A", "34", units=SESSAD)
CAMSP_SITE = SiteKind("camsp", "190", "CAMSP de {city}", "CAMSP {CITY}", "8891A", "34", units=CAMSP)
CMPP_SITE = SiteKind("cmpp", "189", "CMPP de {city}", "CMPP {CITY}", "8891A", "34", units=CMPP)
ESAT_SITE = SiteKind("esat", "246", "ESAT {home}", "ESAT {HOME}", "8810C", "34", units=ESAT)
EAM_SITE = SiteKind("eam", "448", "EAM {home}", "EAM {HOME}", "8710B", "09", units=EAM, prices=True)
MAS_SITE = SiteKind("mas", "255", "MAS {home}", "MAS {HOME}", "8710B", "34", units=MAS)
EANM_LIFE_SITE = SiteKind(
    "foyer_vie", "449", "Foyer de vie {home}", "FOYER DE VIE {HOME}", "8720A", "08", units=EANM_LIFE, prices=True
)
EANM_HOME_SITE = SiteKind(
    "foyer_heb", "449", "Foyer d'hébergement {home}", "FOYER HEBERGEMENT {HOME}", "8720A", "08", units=EANM_HOME
)
SAVS_SITE = SiteKind("savs", "446", "SAVS de {city}", "SAVS {CITY}", "8810C", "08", units=SAVS)
SAMSAH_SITE = SiteKind("samsah", "445", "SAMSAH de {city}", "SAMSAH {CITY}", "8810C", "09", units=SAMSAH)
CSAPA_SITE = SiteKind("csapa", "197", "CSAPA de {city}", "CSAPA {CITY}", "8899B", "34", units=CSAPA)
# City practices outside FINESS are named after the professions present (``RegionGenerator.city_practice``).
CAB_INDIVIDUAL = SiteKind("cab_individual", "SA07", "", "", "8621Z", city="individual")
CAB_GROUP = SiteKind("cab_group", "SA08", "", "", "8621Z", city="group")
CAB_SOCIETY = SiteKind("cab_society", "SA09", "", "", "8622A", city="society")
MSP_SITE = SiteKind(
    "msp", "603", "Maison de santé pluriprofessionnelle de {city}", "MSP {CITY}", "8621Z", "01", city="msp"
)
CDS_SITE = SiteKind("cds", "124", "Centre de santé {home}", "CENTRE DE SANTE {HOME}", "8621Z", "36", city="cds")
# FINESS establishments outside the ROR perimeter (the FINESS file holds them, the regional extracts do not).
PHARMACY = SiteKind("pharmacy", "620", "Pharmacie {street}", "PHARMACIE {STREET}", "4773Z", "01", in_ror=False)
LAB = SiteKind("lab", "611", "Laboratoire de biologie médicale {clinic}", "LBM {CLINIC}", "8690B", "01", in_ror=False)
SOCIAL = (SiteKind("chrs", "214", "CHRS {home}", "CHRS {HOME}", "8790B", "30", in_ror=False),
          SiteKind("mecs", "177", "Maison d'enfants {home}", "MAISON D ENFANTS {HOME}", "8790A", "08", in_ror=False),
          SiteKind("fjt", "257", "Foyer de jeunes travailleurs {home}", "FJT {HOME}", "5590Z", "", in_ror=False),
          SiteKind("mjpm", "340", "Service mandataire judiciaire {city}", "MJPM {CITY}", "8899B", "30", in_ror=False),
          SiteKind("pmi", "223", "Centre de PMI de {city}", "PMI {CITY}", "8411Z", "01", in_ror=False),
          SiteKind("ehpa", "502", "Résidence seniors {home}", "RESIDENCE {HOME}", "8730A", "01", in_ror=False))

_PUBLIC_HOSP = (("13", 0.6), ("14", 0.3), ("11", 0.1))
_ASSOCIATION = (("60", 0.75), ("61", 0.15), ("63", 0.1))
_COMPANY = (("95", 0.6), ("73", 0.15), ("72", 0.25))

GROUPS = (
    Group("chu", 32, (("15", 1.0),), "Centre hospitalier universitaire de {city}",
          ((CHR, (1, 1), 1.0), (CHR_SITE, (2, 6), 1.0), (EHPAD_SITE, (1, 2), 0.5), (USLD_SITE, (1, 1), 0.4),
           (CMP_SITE, (2, 6), 0.8), (CATTP_SITE, (1, 3), 0.5)), ape="8610Z", ej_category="101"),
    Group("ch", 640, _PUBLIC_HOSP, "Centre hospitalier de {city}",
          ((CH, (1, 2), 1.0), (EHPAD_SITE, (1, 2), 0.6), (USLD_SITE, (1, 1), 0.15), (CMP_SITE, (1, 3), 0.45),
           (CATTP_SITE, (1, 1), 0.2)), ape="8610Z", ej_category="355"),
    Group("hl", 250, (("13", 0.8), ("14", 0.2)), "Centre hospitalier de {city}",
          ((HL, (1, 1), 1.0), (EHPAD_SITE, (1, 1), 0.8)), ape="8610Z", ej_category="106"),
    Group("chs", 90, (("14", 0.5), ("11", 0.5)), "Établissement public de santé mentale {saint}",
          ((CHS, (1, 1), 1.0), (CMP_SITE, (3, 10), 1.0), (CATTP_SITE, (2, 5), 0.9)), ape="8610Z", ej_category="292"),
    Group("clcc", 18, (("63", 1.0),), "Centre de lutte contre le cancer {clinic}", ((CLCC, (1, 1), 1.0),), ape="8610Z"),
    Group("clinic", 720, _COMPANY, "{company} Clinique {clinic}", ((CLINIC, (1, 2), 1.0), (CLINIC_MED, (1, 1), 0.15)),
          shared=0.3, ape="8610Z"),
    Group("espic", 110, (("61", 0.5), ("63", 0.5)), "Fondation {clinic}",
          ((CLINIC_ESPIC, (1, 2), 1.0), (EHPAD_SITE, (1, 2), 0.3)), ape="8610Z"),
    Group("smr", 580, (("95", 0.5), ("60", 0.3), ("61", 0.2)), "{company} {home}", ((SMR, (1, 2), 1.0),), shared=0.2,
          ape="8610Z"),
    Group("psy_priv", 150, _COMPANY, "{company} {clinic}", ((PSY_PRIV, (1, 1), 1.0),), shared=0.2, ape="8610Z"),
    Group("dialysis", 180, (("60", 1.0),), "Association pour l'utilisation du rein artificiel {region}",
          ((DIALYSIS_SITE, (1, 3), 1.0), (AUTODIALYSIS, (1, 5), 0.8)), ape="8610Z"),
    Group("had", 200, (("60", 0.6), ("95", 0.4)), "HAD {home}", ((HAD_SITE, (1, 1), 1.0),), ape="8610Z"),
    Group("ehpad_public", 1900, (("21", 0.5), ("22", 0.3), ("19", 0.2)), "EHPAD {home}",
          ((EHPAD_SITE, (1, 2), 1.0), (RESIDENCE_SITE, (1, 1), 0.1)), ape="8710A"),
    Group("ehpad_company", 550, _COMPANY, "{company} Résidences {home}", ((EHPAD_SITE, (1, 4), 1.0),), shared=0.4,
          ape="8710A"),
    Group(
        "asso_pa",
        900,
        _ASSOCIATION,
        "{association}",
        ((EHPAD_SITE, (1, 3), 0.9), (SSIAD_SITE, (1, 1), 0.4), (RESIDENCE_SITE, (1, 1), 0.3), (SAD_SITE, (1, 1), 0.3)),
        shared=0.1,
        ape="8710A",
        offers=((Unit("REPIT", "Plateforme d'accompagnement et de répit des aidants", "04", "38", "47",
                      _acts("325", ("326", 0.5)), public="01", ages=(60, 150)), 0.1),),
    ),
    Group("ccas", 1500, (("17", 1.0),), "CCAS de {city}",
          ((RESIDENCE_SITE, (1, 2), 1.0), (SAD_SITE, (1, 1), 0.5), (SSIAD_SITE, (1, 1), 0.3)), ape="8411Z"),
    Group("asso_ph", 1300, _ASSOCIATION, "{association}",
          ((IME_SITE, (1, 3), 0.7), (ESAT_SITE, (1, 2), 0.7), (EAM_SITE, (1, 1), 0.4), (MAS_SITE, (1, 1), 0.3),
           (EANM_LIFE_SITE, (1, 2), 0.6), (EANM_HOME_SITE, (1, 2), 0.5), (SESSAD_SITE, (1, 3), 0.7),
           (SAVS_SITE, (1, 1), 0.5), (SAMSAH_SITE, (1, 1), 0.3), (ITEP_SITE, (1, 1), 0.15), (EEAP_SITE, (1, 1), 0.1),
           (CAMSP_SITE, (1, 1), 0.1), (CMPP_SITE, (1, 1), 0.15)), shared=0.15, ape="8891A"),
    Group("home_care", 600, (("60", 1.0),), "ADMR de {city}", ((SSIAD_SITE, (1, 1), 1.0), (SAD_SITE, (1, 1), 0.7)),
          shared=0.05, ape="8810A"),
    Group("csapa", 250, (("60", 1.0),), "Association {association} - addictologie", ((CSAPA_SITE, (1, 2), 1.0),),
          ape="8899B"),
    Group("msp", 2300, (("80", 1.0),), "SISA MSP de {city}", ((MSP_SITE, (1, 1), 1.0),), ape="8621Z"),
    Group("cds", 1800, (("60", 0.5), ("47", 0.3), ("03", 0.2)), "Centre de santé {home}", ((CDS_SITE, (1, 2), 1.0),),
          ape="8621Z"),
    Group("cab_individual", 28000, (("70", 1.0),), "", ((CAB_INDIVIDUAL, (1, 1), 1.0),), finess=False),
    Group("cab_group", 21000, (("79", 1.0),), "SCM {street}", ((CAB_GROUP, (1, 1), 1.0),), finess=False),
    Group("cab_society", 9000, (("85", 0.5), ("88", 0.3), ("91", 0.2)), "{society} {surname}",
          ((CAB_SOCIETY, (1, 3), 1.0),), finess=False),
    Group("pharmacy", 16500, (("71", 0.3), ("85", 0.4), ("72", 0.2), ("91", 0.1)), "Pharmacie {street}",
          ((PHARMACY, (1, 1), 1.0),), in_ror=False, ape="4773Z", ej_category="620"),
    Group("lab", 330, (("91", 1.0),), "{company} Biologie {clinic}", ((LAB, (3, 15), 1.0),), in_ror=False, ape="8690B"),
    Group("social", 7000, _ASSOCIATION, "{association}", tuple((k, (1, 2), 0.35) for k in SOCIAL), in_ror=False,
          ape="8790B"),
)

# City practice composition: number of professionals per practice kind, and professions present.
CITY_SIZE = {"individual": (1, 1), "group": (2, 7), "society": (2, 8), "msp": (8, 25), "cds": (4, 18)}
# Professions a group or society practice is built around (society: a single profession).
CITY_MIX = {"msp": (("MG", 4), ("IDE", 3), ("MK", 2), ("SF", 0.5), ("PP", 0.5), ("ORTHOPH", 0.5)),
            "cds": (("MG", 4), ("CD", 2), ("IDE", 2), ("GYNECO", 0.4), ("OPHTA", 0.3), ("CARDIO", 0.3))}
# Share of city professionals who also work in a second practice, and of hospital physicians who also
# have a private practice (mixed activity).
SECOND_PRACTICE = 0.08
MIXED_ACTIVITY = 0.06
# Professionals in the RPPS file who have no role in the ROR (retired, replacements, non-clinical
# practice), per professional of the ROR: the RPPS holds far more people than the ROR's roles.
RPPS_ONLY = 1.0
# Multi-region professionals (work in two regions), per hospital physician.
CROSS_REGION = 0.02
