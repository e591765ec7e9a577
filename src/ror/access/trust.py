"""The trust space as one object: registry, tokens, rate limits and audit, built once per app.

It also knows which peers are the TLS proxy: only their ``X-Ror-Client-*`` headers, which carry the
client certificate nginx verified, are believed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from sqlalchemy import Engine

from ror.access.audit import AuditLog
from ror.access.certs import CertInfo, forwarded_certificate, normalize_thumbprint, x5t_s256
from ror.access.ratelimit import SharedRateLimiter
from ror.access.registry import Application, Registry
from ror.access.tokens import TokenService, TokenState, bearer_challenge, invalid_token
from ror.errors import Forbidden, InvalidRequest, NotFound, TooManyRequests, Unauthorized
from ror.settings import Settings

CERT_HEADER = "x-ror-client-cert"  # nginx: $ssl_client_escaped_cert
VERIFY_HEADER = "x-ror-client-verify"  # nginx: $ssl_client_verify (SUCCESS, FAILED:reason, NONE)
CLIENT_IP_HEADER = "x-ror-client-ip"  # nginx: $remote_addr


def _networks(spec: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    try:
        return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in spec.split(",") if part.strip())
    except ValueError as e:
        raise ValueError(f"ROR_TRUSTED_PROXY_IPS: {e}") from None


class TrustSpace:
    def __init__(self, engine: Engine, settings: Settings):
        self.settings = settings
        self.registry = Registry(engine)
        self.tokens = TokenService(engine, settings)
        self.audit = AuditLog(engine)
        # Shared by the worker processes of this server (the file is opened at the first call); the
        # database URL separates servers on other databases that use the same file.
        self.limiter = SharedRateLimiter(settings.rate_limit_file, settings.rate_limit_per_s,
                                         settings.rate_limit_burst, namespace=settings.database_url)
        self.proxies = _networks(settings.trusted_proxy_ips)
        self._peers: dict[str, bool] = {}
        self.admin_thumbprints = frozenset(normalize_thumbprint(t) for t in
                                           settings.admin_cert_thumbprints.split(",") if t.strip())

    def is_proxy(self, peer: str | None) -> bool:
        if not peer:
            return False
        known = self._peers.get(peer)
        if known is None:  # parsed once per peer address: this runs twice per request
            try:
                address = ipaddress.ip_address(peer)
                known = any(address in net for net in self.proxies)
            except ValueError:  # a unix socket path, or a test client's made-up name
                known = False
            if len(self._peers) >= 4096:
                self._peers.clear()
            self._peers[peer] = known
        return known

    def client_certificate(self, headers: Mapping[str, str], peer: str | None) -> CertInfo | None:
        """The client certificate nginx verified, None when none was presented (or the peer is not the proxy).

        A certificate nginx refused (unknown CA, expired, revoked) is an ``Unauthorized`` with its reason.
        """
        if not self.is_proxy(peer):
            return None
        verify = headers.get(VERIFY_HEADER, "NONE")
        if verify == "SUCCESS" and headers.get(CERT_HEADER):
            try:
                return forwarded_certificate(headers[CERT_HEADER])
            except InvalidRequest:
                raise Unauthorized("The client certificate forwarded by the TLS proxy cannot be read",
                                   headers=bearer_challenge()) from None
        if verify.startswith("FAILED"):
            reason = verify.partition(":")[2] or "verification failed"
            raise Unauthorized(f"Client certificate refused: {reason} (it must be a valid, unrevoked certificate "
                               "of the trust-space CA)", headers=bearer_challenge())
        return None

    def authenticate(self, token: str, cert: CertInfo | None) -> Application:
        """The active application a Bearer token belongs to, with its certificate binding checked.

        One primary-key join, plus a registry load when the registration changed and a signature check the first
        time a token is seen.
        """
        claims = self.tokens.verify(token)
        return self._admitted(claims, self.tokens.state(claims["jti"]), cert)

    async def authenticate_async(self, token: str, cert: CertInfo | None) -> Application:
        """``authenticate`` on the event loop: the token's state awaited there on PostgreSQL (``state_async``); the
        rest, a registry load when the registration changed aside, is the process's own work."""
        claims = self.tokens.verify(token)
        return self._admitted(claims, await self.tokens.state_async(claims["jti"]), cert)

    def _admitted(self, claims: dict, state: TokenState | None, cert: CertInfo | None) -> Application:
        if state is None or state.app_id != claims["sub"]:
            raise invalid_token("The access token was not issued by this server")
        if state.status != "active":  # before revocation: suspending revokes the tokens, and this says why
            raise Forbidden(f"Application '{state.app_id}' is {state.status}: access refused")
        if state.revoked:
            raise invalid_token("The access token has been revoked: request a new one")
        app = self.registry.current(state.app_id, state.rev)
        bound = (claims.get("cnf") or {}).get("x5t#S256")
        if bound is None and app.needs_certificate:
            raise invalid_token(f"Profile-{app.profile} applications need a certificate-bound token: request a "
                                "new one over mutual TLS")
        if bound is not None:
            if cert is None:
                raise invalid_token("This access token is bound to a client certificate: present it (mutual TLS)")
            if x5t_s256(cert.thumbprint) != bound:
                raise invalid_token("This access token is bound to another client certificate")
            if cert.thumbprint not in {c.thumbprint for c in app.certificates}:
                raise invalid_token("The client certificate of this token is no longer registered")
        return app

    def issue_token(self, form: Mapping[str, str], basic: tuple[str, str] | None, cert: CertInfo | None) -> dict:
        """The OAuth2 ``client_credentials`` grant: profile 0 by id and secret, profiles 1–5 by mutual TLS.

        Errors are ``InvalidRequest`` (bad grant), ``Unauthorized`` (client authentication failed),
        ``Forbidden`` (client not active) and ``TooManyRequests``; blocking (scrypt, database).
        """
        if form.get("grant_type") != "client_credentials":
            raise InvalidRequest(f"Unsupported grant_type {form.get('grant_type')!r}: only client_credentials",
                                 expression="grant_type")
        if basic and "client_secret" in form:
            raise InvalidRequest("Use one client authentication method: HTTP Basic or client_secret, not both")
        client_id, secret = basic if basic else (form.get("client_id", ""), form.get("client_secret"))
        if basic and form.get("client_id", client_id) != client_id:
            raise InvalidRequest("client_id differs from the HTTP Basic user", expression="client_id")
        if not client_id:
            raise InvalidRequest("client_id is required", expression="client_id")
        wait = self.limiter.take("token:" + client_id)
        if wait:
            raise TooManyRequests(f"Too many token requests for client '{client_id}'",
                                  headers={"Retry-After": str(max(1, round(wait + 0.5)))})
        failed = Unauthorized("Client authentication failed (unknown client, wrong secret, or a certificate "
                              "not registered for it)")
        if secret is not None:
            app = self.registry.authenticate_secret(client_id, secret)
            if app is None:  # also for profiles 1-5, which have no secret
                raise failed
            thumbprint = None
        else:
            if cert is None:
                raise Unauthorized("Client authentication failed: send client_secret (profile 0) or connect with "
                                   "the registered client certificate (mutual TLS)")
            try:
                app = self.registry.get(client_id)
            except NotFound:
                raise failed from None
            if not app.needs_certificate or cert.thumbprint not in {c.thumbprint for c in app.certificates}:
                raise failed
            thumbprint = cert.thumbprint
        if app.status != "active":
            raise Forbidden(f"Application '{client_id}' is {app.status}")
        return self.tokens.issue(app, thumbprint)
