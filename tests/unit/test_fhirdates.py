"""FHIR dates as UTC stamp ranges: offsets, precisions and the edges of the calendar."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ror import fhirdates
from ror.fhirdates import STAMP_MIN, parse_range


@pytest.mark.parametrize(("value", "expected"), [
    ("2024-03-05T10:00:00+02:00", ("2024-03-05T08:00:00.000Z", "2024-03-05T08:00:00.999Z")),
    ("2024-03-05T10:00:00-03:30", ("2024-03-05T13:30:00.000Z", "2024-03-05T13:30:00.999Z")),
    ("2024-03-05T10:00:00.5Z", ("2024-03-05T10:00:00.500Z", "2024-03-05T10:00:00.500Z")),
    ("2024-03-05T10:00Z", ("2024-03-05T10:00:00.000Z", "2024-03-05T10:00:59.999Z")),
    ("2024-03", ("2024-02-29T23:00:00.000Z", "2024-03-31T21:59:59.999Z")),  # Paris: winter, then summer time
    ("2024", ("2023-12-31T23:00:00.000Z", "2024-12-31T22:59:59.999Z")),
    ("9999-12-31T23:59:59Z", ("9999-12-31T23:59:59.000Z", "9999-12-31T23:59:59.999Z")),
    ("9999", ("9998-12-31T23:00:00.000Z", fhirdates.STAMP_MAX)),  # its end is not a datetime: the last stamp
])
def test_ranges(value, expected):
    assert parse_range(value, "Europe/Paris") == expected


def test_first_day_of_the_calendar_in_local_time_is_clamped_not_an_error():
    low, high = parse_range("0001-01-01", "Europe/Paris")
    assert low == STAMP_MIN and high.startswith("0001-01-01T23:")


@pytest.mark.parametrize("value", ["2024-13", "2024-02-30", "24-01-01", "2024-01-01T25:00Z", "2024-01-01T10:00+2:00"])
def test_not_dates(value):
    assert parse_range(value, "Europe/Paris") is None


def test_epoch_stamps_to_the_millisecond_across_seconds():
    """The text up to the second is kept from one stamp to the next: each stamp must still be its own instant."""
    times = [1764208799.9996, 1764208799.999, 1764208800.0004, 1764208800.25, 951782400.5, 1764208800.0]
    assert [fhirdates.epoch_stamp(t) for t in times] == [
        "2025-11-27T01:59:59.999Z", "2025-11-27T01:59:59.999Z", "2025-11-27T02:00:00.000Z",
        "2025-11-27T02:00:00.250Z", "2000-02-29T00:00:00.500Z", "2025-11-27T02:00:00.000Z"]


def test_now_stamp_agrees_with_the_datetime_formatting():
    before = fhirdates.stamp(datetime.now(UTC))
    now = fhirdates.now_stamp()
    after = fhirdates.stamp(datetime.now(UTC))
    assert before <= now <= after and len(now) == 24


@pytest.mark.parametrize("value", [
    "2024-03-05T10:00:00+02:00", "2024-12-31T23:59:59-01:00", "2024-02-29T00:30:00+01:00", "2023-03-01T00:00:00+14:00",
    "2024-03-05T10:00:00Z", "2024-03-05T10:00:00-00:00", "2024-03-05T10:00:00.5Z", "2024-03-05T10:00:00.123+05:30",
    "2024-03-05T10:00:00.1239+01:00", "2024-03-05T10:00:00.123456789-03:00", "2024-03-05T10:00:00.000Z",
    "0001-01-01T00:30:00+01:00", "0001-01-01T00:30:00-01:00", "9999-12-31T23:30:00-01:00", "9999-12-31T23:59:59Z",
    "2024-02-30T10:00:00Z", "2023-02-29T10:00:00+01:00", "2024-01-01T10:00:60Z", "2024-01-01T24:00:00Z",
    "0000-01-01T00:00:00Z",
])
def test_an_instant_read_by_datetime_gives_the_calendar_s_range(value):
    """Instants with seconds and a zone take a shortcut (``datetime.fromisoformat``): the same range, the same
    clamping at the edges of the calendar, the same refusal of what is not a time."""
    parts = fhirdates._DATE_RE.match(value).groupdict()
    assert parse_range.__wrapped__(value, "Europe/Paris") == fhirdates._calendar_range(parts, "Europe/Paris")
