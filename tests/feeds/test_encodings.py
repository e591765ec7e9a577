"""How the feeds decode text files line by line, and repair double-encoded text."""

from __future__ import annotations

import orjson

from ror.feeds.model import DecodedLines, repair_mojibake, repair_strings
from ror.feeds.regional import RegionalFeed
from ror.generate.dirty import mojibake


def test_a_latin1_file_with_ascii_lines_is_latin1_and_a_utf8_line_in_it_makes_it_mixed(tmp_path):
    path = tmp_path / "finess.csv"
    path.write_bytes("structureet;1;CLINIQUE\nstructureet;2;Hôpital Sainte-Anne\n".encode("latin-1"))
    lines = DecodedLines(path)
    assert [t for _, t in lines] == ["structureet;1;CLINIQUE", "structureet;2;Hôpital Sainte-Anne"]
    assert lines.note() == "encoding: Windows-1252/Latin-1"
    path.write_bytes(path.read_bytes() + "structureet;3;Hôpital Nord\n".encode())
    lines = DecodedLines(path)
    assert [t for _, t in lines][2] == "structureet;3;Hôpital Nord"
    assert lines.note() == "encoding: mixed, 1 UTF-8 lines and 1 Windows-1252/Latin-1 lines"


def test_double_encoded_text_is_repaired_and_right_text_left_alone(tmp_path):
    for text in ("Médecin généraliste", "Hôpital – Œuvre Saint-Jean", "JOÃO", "ça coûte 5 €", "Ergothérapie"):
        assert repair_mojibake(mojibake(text)) == text
        assert repair_mojibake(text) is None
    assert repair_mojibake(mojibake("Médecin") + " à Évry") is None  # a right "à" too: not one double encoding
    assert repair_strings({"name": mojibake("Rééducation"), "alias": ["Église"], "n": 1}) == (
        {"name": "Rééducation", "alias": ["Église"], "n": 1}, True)
    path = tmp_path / "rpps.txt"
    path.write_bytes(f"0|012600631|{mojibake('Thérèse')}|\n8|10100375103|Noël|\n".encode())
    lines = DecodedLines(path)
    assert [t for _, t in lines] == ["0|012600631|Thérèse|", "8|10100375103|Noël|"]
    assert lines.repaired == [1]
    assert "1 line(s) double-encoded" in lines.note() and "line(s) 1" in lines.note()


def test_a_regional_ndjson_file_notes_its_repaired_lines_once(tmp_path):
    """Its two passes (identities, then resources) read each line; the note is the second's alone."""
    path = tmp_path / "Organization.ndjson"
    lines = [orjson.dumps({"resourceType": "Organization", "id": f"o{i}", "name": name}).decode()
             for i, name in enumerate((mojibake("Hôpital Sainte-Anne"), "Clinique du Parc"), 1)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    feed = RegionalFeed("93")
    records = list(feed.read(path))
    assert records[0].entities[0].resource["name"] == "Hôpital Sainte-Anne"
    assert [n for n in feed.notes if "double-encoded" in n] == [
        "Organization.ndjson: 1 line(s) double-encoded (UTF-8 read as Windows-1252 and encoded again), read as they "
        "were meant: line(s) 1"]
