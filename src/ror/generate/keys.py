"""National identifiers with their check keys: FINESS, SIREN/SIRET, RPPS, ADELI, and the cabinet numbers.

The registry numbers end with a Luhn (mod 10) key over the whole number, which published numbers confirm
(FINESS ``010000024``, ``970100012``; SIREN ``732829320``; RPPS ``10106476764``; ADELI ``012600631``).
A cabinet number (RPPS-rang / ADELI-rang) is the number of the professional holding the cabinet, with its
own key, followed by a rang and no further key: the RPPS extraction samples (``shared/data/rpps``) show
``Ancien identifiant de la structure`` ``410005929293016`` = ``4`` + RPPS ``10005929293`` + rang ``016``
(and ``410100375103005`` for the physician ``10100375103`` himself), ``001920057500`` = ``0`` + ADELI
``019200575`` + rang ``00``; ``ror.profiles.identifiers`` reads them so. For Corsican FINESS numbers the
letters of ``2A``/``2B`` are read as ``20`` to compute the key (an assumption shared with
``tests/fixtures/small/check_bundle.py``:
no official statement of that rule was found offline).
"""

from __future__ import annotations


def luhn_ok(digits: str) -> bool:
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def luhn_key(payload: str) -> str:
    """The digit that makes ``payload + digit`` pass the Luhn test."""
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = ord(ch) - 48
        if i % 2 == 0:  # doubled once the key digit is appended
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def _finess_digits(number: str) -> str:
    return "20" + number[2:] if number[:2] in ("2A", "2B") else number


def finess(prefix: str, order: int) -> str:
    """FINESS number: a 2-character department prefix (``01``, ``2A``, ``97``...) then order digits and key.

    ``prefix`` may be longer than 2 characters for overseas numbers (``9701`` = Guadeloupe); the order
    number fills the remaining positions up to 8 characters.
    """
    body = f"{prefix}{order:0{8 - len(prefix)}d}"
    if len(body) != 8:
        raise ValueError(f"FINESS order {order} does not fit after prefix {prefix!r}")
    return body + luhn_key(_finess_digits(body))


def finess_ok(number: str) -> bool:
    return len(number) == 9 and luhn_ok(_finess_digits(number))


def siren(body: int) -> str:
    """SIREN: 8 digits and a Luhn key."""
    payload = f"{body:08d}"
    return payload + luhn_key(payload)


def siret(siren_number: str, nic: int) -> str:
    """SIRET: the SIREN, a 4-digit establishment number (NIC) and a Luhn key over the 14 digits."""
    payload = f"{siren_number}{nic:04d}"
    return payload + luhn_key(payload)


def rpps(body: int) -> str:
    """RPPS number: ``10`` then 8 digits and a Luhn key (11 digits, the range seen in published numbers)."""
    payload = f"10{body:08d}"
    return payload + luhn_key(payload)


def adeli(department: str, profession: str, order: int) -> str:
    """ADELI number: department (2), profession code (2), order (4) and a Luhn key (9 characters), computed as a
    FINESS number's for Corsica (2A/2B read as 20)."""
    payload = f"{department[:2]}{profession[-2:]}{order:04d}"
    return payload + luhn_key(_finess_digits(payload))


def cabinet(number: str, rang: int) -> str:
    """Cabinet number: an RPPS number and a 3-digit rang (14 digits), or an ADELI number and a 2-digit rang
    (11 digits)."""
    return f"{number}{rang:03d}" if len(number) == 11 else f"{number}{rang:02d}"


def corrupt_key(number: str) -> str:
    """The same number with a wrong last digit (for dirty records)."""
    last = number[-1]
    return number[:-1] + str((int(last) + 5) % 10) if last.isdigit() else number[:-1] + "0"
