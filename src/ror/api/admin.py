"""The administrator's JSON API of the trust space (``/admin/…``): applications, tokens, keys, audit.

Access: when ``auth_required`` is on, only a client certificate verified by the TLS proxy whose
SHA-256 thumbprint is listed in ``admin_cert_thumbprints``; the check is made here, so the routes
stay closed even if mounted without ``secure()``. Errors are OperationOutcomes, like the FHIR API.
The same operations exist on the command line (``ror apps …``).
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ror.access.certs import CertInfo, normalize_thumbprint, parse_pem
from ror.access.trust import TrustSpace
from ror.api.security import error_response
from ror.errors import Forbidden, InvalidRequest, PayloadTooLarge, RorError, Unauthorized, UnsupportedMediaType

_BODY_MAX_BYTES = 256 * 1024
_REGISTER_FIELDS = {"app_id", "name", "contact", "profile", "user_profile_code", "role_code", "user_profile_system",
                    "role_system", "certificates", "write_establishments"}
_REGISTER_REQUIRED = ("app_id", "name", "contact", "profile", "user_profile_code", "role_code")
_UPDATE_FIELDS = {"name", "contact", "profile", "user_profile_code", "role_code", "user_profile_system",
                  "role_system", "write_establishments", "add_writes", "remove_writes"}


def certificate_from(spec: object) -> CertInfo:
    """A certificate given as ``{"pem": …}`` or as ``{"thumbprint": …, "subject": …}``."""
    if isinstance(spec, dict) and isinstance(spec.get("pem"), str) and set(spec) == {"pem"}:
        return parse_pem(spec["pem"])
    if isinstance(spec, dict) and set(spec) == {"thumbprint", "subject"} and isinstance(spec["subject"], str) \
            and isinstance(spec["thumbprint"], str):
        return CertInfo(normalize_thumbprint(spec["thumbprint"]), spec["subject"], "")
    raise InvalidRequest('A certificate is {"pem": "-----BEGIN CERTIFICATE-----…"} or {"thumbprint": "<SHA-256 '
                         'hex>", "subject": "<DN>"}', expression="certificates")


def _fields(body: object, allowed: set[str]) -> dict:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidRequest(f"Unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}",
                             expression=unknown)
    return body


def _strings(body: dict, key: str) -> list[str] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRequest(f"{key} must be a list of strings", expression=key)
    return value


def _int_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if not raw.isdigit():
        raise InvalidRequest(f"Query parameter {name} must be a non-negative integer", expression=name)
    return int(raw)


class _AdminApi:
    def __init__(self, trust: TrustSpace):
        self.trust = trust
        self.registry = trust.registry

    def _require_admin(self, request: Request) -> None:
        if not self.trust.settings.auth_required:
            return
        cert = self.trust.client_certificate(request.headers, request.client.host if request.client else None)
        if cert is None:
            raise Unauthorized("The admin API requires an administrator's client certificate (mutual TLS)")
        if cert.thumbprint not in self.trust.admin_thumbprints:
            raise Forbidden("This client certificate is not an administrator's (ROR_ADMIN_CERT_THUMBPRINTS)")

    def endpoint(self, work: Callable[[Request, object], tuple[int, object]]):
        """An endpoint: access check, JSON body, ``work`` (blocking) in the threadpool, errors as OperationOutcome."""

        async def run(request: Request) -> Response:
            try:
                self._require_admin(request)
                body = None
                if request.method in ("POST", "PATCH"):
                    raw = await request.body()
                    if len(raw) > _BODY_MAX_BYTES:
                        raise PayloadTooLarge(f"Admin requests are limited to {_BODY_MAX_BYTES} bytes")
                    if raw:
                        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
                            raise UnsupportedMediaType("Send the body as application/json")
                        try:
                            body = orjson.loads(raw)
                        except orjson.JSONDecodeError as e:
                            raise InvalidRequest(f"The body is not JSON: {e}") from None
                status, result = await run_in_threadpool(work, request, body)
            except RorError as e:
                return error_response(e)
            return Response(orjson.dumps(result), status_code=status, media_type="application/json",
                            headers={"Cache-Control": "no-store"})

        return run

    # -- applications -------------------------------------------------------------------------------
    def list_apps(self, request: Request, body: object) -> tuple[int, object]:
        return 200, {"applications": [a.to_json() for a in self.registry.applications()]}

    def register(self, request: Request, body: object) -> tuple[int, object]:
        fields = _fields(body, _REGISTER_FIELDS)
        missing = [k for k in _REGISTER_REQUIRED if k not in fields]
        if missing:
            raise InvalidRequest(f"Missing field(s) {', '.join(missing)}", expression=missing)
        certs = fields.get("certificates") or []
        if not isinstance(certs, list):
            raise InvalidRequest("certificates must be a list", expression="certificates")
        app, secret = self.registry.register(
            **{k: v for k, v in fields.items() if k not in ("certificates", "write_establishments")},
            certificates=[certificate_from(c) for c in certs],
            write_establishments=_strings(fields, "write_establishments") or ())
        return 201, {"application": app.to_json(), "client_secret": secret}

    def show(self, request: Request, body: object) -> tuple[int, object]:
        return 200, {"application": self.registry.get(request.path_params["app_id"]).to_json()}

    def update(self, request: Request, body: object) -> tuple[int, object]:
        fields = _fields(body, _UPDATE_FIELDS)
        lists = {k: _strings(fields, k) for k in ("write_establishments", "add_writes", "remove_writes")}
        app, secret = self.registry.update(
            request.path_params["app_id"], **{k: v for k, v in fields.items() if k not in lists},
            write_establishments=lists["write_establishments"], add_writes=lists["add_writes"] or (),
            remove_writes=lists["remove_writes"] or ())
        return 200, {"application": app.to_json(), "client_secret": secret}

    def status(self, request: Request, body: object) -> tuple[int, object]:
        fields = _fields(body, {"status", "reason"})
        app = self.registry.set_status(request.path_params["app_id"], fields.get("status"), fields.get("reason"))
        return 200, {"application": app.to_json()}

    def secret(self, request: Request, body: object) -> tuple[int, object]:
        return 200, {"client_secret": self.registry.rotate_secret(request.path_params["app_id"])}

    def add_certificate(self, request: Request, body: object) -> tuple[int, object]:
        app = self.registry.add_certificate(request.path_params["app_id"], certificate_from(body))
        return 201, {"application": app.to_json()}

    def remove_certificate(self, request: Request, body: object) -> tuple[int, object]:
        app = self.registry.remove_certificate(request.path_params["app_id"], request.path_params["thumbprint"])
        return 200, {"application": app.to_json()}

    # -- tokens, keys, audit --------------------------------------------------------------------------
    def tokens(self, request: Request, body: object) -> tuple[int, object]:
        return 200, {"tokens": self.trust.tokens.tokens(request.query_params.get("app_id"))}

    def revoke_token(self, request: Request, body: object) -> tuple[int, object]:
        self.trust.tokens.revoke(request.path_params["jti"])
        return 200, {"revoked": request.path_params["jti"]}

    def keys(self, request: Request, body: object) -> tuple[int, object]:
        return 200, {"keys": self.trust.tokens.signing_keys()}

    def rotate_key(self, request: Request, body: object) -> tuple[int, object]:
        return 201, {"kid": self.trust.tokens.rotate()}

    def audit(self, request: Request, body: object) -> tuple[int, object]:
        q = request.query_params
        limit = _int_param(request, "limit")
        rows = self.trust.audit.query(app_id=q.get("app_id"), since=q.get("since"), until=q.get("until"),
                                      status=_int_param(request, "status"), operation=q.get("operation"),
                                      outcome=q.get("outcome"), before_id=_int_param(request, "before"),
                                      limit=100 if limit is None else limit)
        return 200, {"records": rows, "next_before": rows[-1]["id"] if rows else None}


def admin_routes(trust: TrustSpace) -> list[Route]:
    """The ``/admin/…`` routes, to add to the app's routes (``create_app``)."""
    api = _AdminApi(trust)
    e = api.endpoint
    return [
        Route("/admin/apps", e(api.list_apps), methods=["GET"]),
        Route("/admin/apps", e(api.register), methods=["POST"]),
        Route("/admin/apps/{app_id}", e(api.show), methods=["GET"]),
        Route("/admin/apps/{app_id}", e(api.update), methods=["PATCH"]),
        Route("/admin/apps/{app_id}/status", e(api.status), methods=["POST"]),
        Route("/admin/apps/{app_id}/secret", e(api.secret), methods=["POST"]),
        Route("/admin/apps/{app_id}/certificates", e(api.add_certificate), methods=["POST"]),
        Route("/admin/apps/{app_id}/certificates/{thumbprint}", e(api.remove_certificate), methods=["DELETE"]),
        Route("/admin/tokens", e(api.tokens), methods=["GET"]),
        Route("/admin/tokens/{jti}/revoke", e(api.revoke_token), methods=["POST"]),
        Route("/admin/keys", e(api.keys), methods=["GET"]),
        Route("/admin/keys/rotate", e(api.rotate_key), methods=["POST"]),
        Route("/admin/audit", e(api.audit), methods=["GET"]),
    ]
