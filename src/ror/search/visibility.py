"""Which resources and index rows an access profile may see, as SQL over the index (snapshot-aware).

Resource-level rules (``ror.profiles.access`` has the element-level ones):

- a sensitive offer (``uniteSensible``) and what hangs under it — its places, its roles, the
  professionals seen only through them, the anomalies about them — are visible to profiles 1 and 4
  only;
- roles (and so professionals) are visible to profile 3 only on medico-social offers, to profile 0
  only on city ("Ville") offers;
- profile 3 sees the capacities of the places of medico-social offers only.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, Select, and_, literal, or_, select
from sqlalchemy.sql.elements import BindParameter

from ror.profiles.access import CAPACITY, CHAMP_MS, CHAMP_SYSTEM, CHAMP_VILLE, bit
from ror.profiles.searchparams import SearchParam
from ror.store.indexer import SENSITIVE_KEY
from ror.store.schema import idx_date, idx_ref, idx_token, resource

_FULL_VIEW = (1, 4)  # profiles that see every resource


def visible(t, snap: BindParameter) -> ColumnElement:
    """The index row belongs to the snapshot."""
    return and_(t.c.since_tx <= snap, t.c.until_tx > snap)


class Visibility:
    """Visibility for one profile at one snapshot. Building blocks are named CTEs, made once per
    instance: nesting them as subqueries overflows SQLite's parser on the deeper rules."""

    def __init__(self, profile: int, snap: BindParameter):
        self.profile = profile
        self.snap = snap
        self._bit = literal(bit(profile))
        self._ctes: dict[str, object] = {}

    def row_conditions(self, t) -> list[ColumnElement]:
        return [] if self.profile == 1 else [t.c.vis.op("&")(self._bit) != 0]

    def everything(self, rtype: str) -> Select:
        d = idx_date.alias()
        return select(d.c.pk).where(d.c.param == f"{rtype}._lastUpdated", visible(d, self.snap))

    def restrict(self, rtype: str, sel: Select) -> Select:
        hidden = self.hidden(rtype)
        if hidden is None:
            return sel
        sub = sel.subquery()
        return select(sub.c.pk).where(sub.c.pk.not_in(hidden))

    def _cte(self, name: str, build) -> Select:
        if name not in self._ctes:
            self._ctes[name] = build().cte(f"vis_{name}")
        cte = self._ctes[name]
        return select(cte.c.pk)

    # -- building blocks --------------------------------------------------------------------------
    def _sensitive_offers(self) -> Select:
        def build():
            t = idx_token.alias()
            return select(t.c.pk).where(t.c.param == SENSITIVE_KEY, t.c.code == "true", visible(t, self.snap))
        return self._cte("sensitive", build)

    def _offers_of_champ(self, code: str) -> Select:
        def build():
            t = idx_token.alias()
            return select(t.c.pk).where(t.c.param == "HealthcareService.service-type", t.c.system == CHAMP_SYSTEM,
                                        t.c.code == code, visible(t, self.snap))
        return self._cte(f"champ_{code}", build)

    def _rids(self, rtype: str, pks: Select) -> Select:
        r = resource.alias()
        return select(r.c.rid).where(r.c.rtype == rtype, r.c.pk.in_(pks))

    def _places_of(self, name: str, offers: Select) -> Select:
        def build():
            ir, r = idx_ref.alias(), resource.alias()
            return select(r.c.pk).where(r.c.rtype == "Location", r.c.rid.in_(
                select(ir.c.target_id).where(ir.c.param == "HealthcareService.location",
                                             ir.c.target_type == "Location", visible(ir, self.snap),
                                             ir.c.pk.in_(offers))))
        return self._cte(f"places_{name}", build)

    def _roles_on(self, name: str, offers: Select) -> Select:
        def build():
            ir = idx_ref.alias()
            return select(ir.c.pk).where(
                ir.c.param == "PractitionerRole.service", ir.c.target_type == "HealthcareService",
                visible(ir, self.snap), ir.c.target_id.in_(self._rids("HealthcareService", offers)))
        return self._cte(f"roles_{name}", build)

    def _role_offers(self) -> Select:
        """Offers whose roles the profile sees."""
        def build():
            sub = self.everything("HealthcareService").subquery()
            q = select(sub.c.pk).where(sub.c.pk.not_in(self._sensitive_offers()))
            if self.profile == 3:
                q = q.where(sub.c.pk.in_(self._offers_of_champ(CHAMP_MS)))
            elif self.profile == 0:
                q = q.where(sub.c.pk.in_(self._offers_of_champ(CHAMP_VILLE)))
            return q
        return self._cte("role_offers", build)

    # -- hidden resources ---------------------------------------------------------------------------
    def hidden(self, rtype: str) -> Select | None:
        """pks of ``rtype`` the profile must not see, or None when it sees them all."""
        if self.profile in _FULL_VIEW or rtype == "Organization":
            return None
        if rtype == "HealthcareService":
            return self._sensitive_offers()
        if rtype == "Location":
            return self._places_of("sensitive", self._sensitive_offers())
        if rtype == "PractitionerRole":
            return self._cte("hidden_roles", lambda: self._hidden_among(
                "PractitionerRole", self._roles_on("seen", self._role_offers())))
        if rtype == "Practitioner":
            def build():
                ir = idx_ref.alias()
                shown = select(resource.c.pk).where(resource.c.rtype == "Practitioner", resource.c.rid.in_(
                    select(ir.c.target_id).where(ir.c.param == "PractitionerRole.practitioner",
                                                 visible(ir, self.snap),
                                                 ir.c.pk.in_(self._roles_on("seen", self._role_offers())))))
                return self._hidden_among("Practitioner", shown)
            return self._cte("hidden_practitioners", build)
        if rtype == "Task":
            def build():
                ir = idx_ref.alias()
                conds = [and_(ir.c.target_type == target, ir.c.target_id.in_(self._rids(target, self.hidden(target))))
                         for target in ("HealthcareService", "Location", "PractitionerRole", "Practitioner")]
                return select(ir.c.pk).where(ir.c.param == "Task.focus", visible(ir, self.snap), or_(*conds))
            return self._cte("hidden_tasks", build)
        return None

    def _hidden_among(self, rtype: str, shown: Select) -> Select:
        sub = self.everything(rtype).subquery()
        return select(sub.c.pk).where(sub.c.pk.not_in(shown))

    def scope_records(self, param: SearchParam, sel: Select) -> Select:
        """Profile 3 sees capacities of medico-social places only: rows of other places never match."""
        if self.profile != 3 or param.group != CAPACITY:
            return sel
        sub = sel.subquery()
        return select(sub.c.pk).where(sub.c.pk.in_(self._places_of("ms", self._offers_of_champ(CHAMP_MS))))

    def medico_social_places_and_roles(self) -> tuple[Select, Select]:
        """(places, roles) serving medico-social offers: the context of their redaction."""
        ms = self._offers_of_champ(CHAMP_MS)
        return self._places_of("ms", ms), self._roles_on("ms", ms)
