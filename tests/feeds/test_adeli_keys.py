"""ADELI numbers carry a Luhn key, as FINESS and RPPS numbers do: every one of the real RPPS sample passes it, so a
feed rejects a professional whose ADELI number fails it, and the profile validator refuses such an idNat_PS."""

from __future__ import annotations

from ror.feeds.rpps import RppsFeed
from ror.feeds.runs import run_import
from ror.generate import dirty, keys
from ror.profiles.identifiers import ADELI_RANG, CHECKS, ID_NAT_PS, ID_NAT_STRUCT, check_adeli
from tests.feeds.conftest import RPPS_SAMPLE


def _sample_adeli() -> list[tuple[int, str]]:
    """(line number, ADELI number) of the real sample's ADELI professionals (identifier type 0)."""
    lines = RPPS_SAMPLE.read_text("utf-8").splitlines()
    return [(n, line.split("|")[1]) for n, line in enumerate(lines, 1) if line.startswith("0|")]


def test_every_real_adeli_number_passes_its_key():
    numbers = {number for _, number in _sample_adeli()}
    assert len(numbers) == 21
    assert [n for n in sorted(numbers) if check_adeli(n)] == []


def test_a_wrong_adeli_key_is_refused_and_a_corsican_one_only_warned():
    assert check_adeli("012600631") is None
    assert check_adeli("012600636") == ("error", "ADELI number '012600636' has a wrong check key (Luhn)")
    assert check_adeli("01260063")[0] == "error"
    corsican = keys.adeli("2A", "26", 63)
    assert check_adeli(corsican) is None
    assert check_adeli(corsican[:-1] + str((int(corsican[-1]) + 1) % 10))[0] == "warning"
    assert CHECKS[ID_NAT_PS]("0012600636")[0] == "error"
    assert CHECKS[ID_NAT_PS]("0012600631") is None
    assert CHECKS[ID_NAT_STRUCT]("001260063101") is None  # TRE_G07 0: ADELI number and rang
    assert CHECKS[ID_NAT_STRUCT]("001260063601")[0] == "error"
    assert CHECKS[ADELI_RANG]("01260063101") is None
    assert CHECKS[ADELI_RANG]("01260063601")[0] == "error"
    # What the generator's manifest expects of its dirty records, accordingly
    assert dirty.expect("rpps", "bad_key", "0012600631") == "reject"
    assert dirty.expect("rpps", "bad_key", "0" + corsican) == "flag"
    assert dirty.expect("fhir", "bad_key", "0" + corsican) == "flag"


def test_the_rpps_feed_rejects_a_professional_whose_adeli_key_is_wrong(engine, tmp_path):
    n, number = _sample_adeli()[0]
    bad = number[:-1] + str((int(number[-1]) + 5) % 10)
    lines = RPPS_SAMPLE.read_text("utf-8").splitlines(keepends=True)
    lines[n - 1] = lines[n - 1].replace(f"|{number}|0{number}|", f"|{bad}|0{bad}|", 1)
    extract = tmp_path / RPPS_SAMPLE.name
    extract.write_text("".join(lines), encoding="utf-8")
    report = run_import(engine, RppsFeed(), extract)
    errors = [(p.line, p.reason) for p in report.problems if p.severity == "error"]
    assert errors == [(n, f"ADELI number '{bad}' has a wrong check key (Luhn)")]
    assert report.counts["rejected"] == 1
