"""Who is calling: what the service layer needs to filter reads and check writes (issue 6)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated application of a request (``request.state.principal``).

    ``write_establishments`` holds the EG identifiers (FINESS or idNatStruct) the application may
    modify; ``write_all`` is the explicit "everything" of the local principal used when security
    is off, so that an empty set never means "all".
    """

    app_id: str
    name: str
    profile: int
    write_establishments: frozenset[str]
    status: str
    write_all: bool = False

    def may_write(self, *identifiers: str) -> bool:
        """True when one of an establishment's identifiers is in the write rights.

        An idNatStruct of type 1 is ``"1" + FINESS``: both spellings name the same EG.
        """
        if self.write_all:
            return True
        for ident in identifiers:
            if ident in self.write_establishments:
                return True
            alias = ident[1:] if len(ident) == 10 and ident[0] == "1" else "1" + ident if len(ident) == 9 else None
            if alias in self.write_establishments:
                return True
        return False


LOCAL = Principal(app_id="local", name="local access (security off)", profile=1,
                  write_establishments=frozenset(), status="active", write_all=True)
