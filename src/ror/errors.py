"""The one error tree of ROR national.

Every error carries a stable ``code`` (documented in docs/errors.md), the HTTP status it maps to,
the FHIR ``OperationOutcome.issue.code`` and, when known, the FHIRPath ``expression`` of the faulty
element or the name of the faulty search parameter. The API turns any ``RorError`` into an
OperationOutcome; the CLI prints ``message`` on one line. Anything else reaching the top is a bug.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Issue:
    """One OperationOutcome issue."""

    severity: str  # fatal | error | warning | information
    code: str  # FHIR issue-type code: invalid, not-found, not-supported, business-rule, ...
    diagnostics: str
    expression: list[str] = field(default_factory=list)

    def to_fhir(self) -> dict:
        out: dict = {"severity": self.severity, "code": self.code, "diagnostics": self.diagnostics}
        if self.expression:
            out["expression"] = self.expression
        return out


class RorError(Exception):
    """Base of every expected error. Subclasses fix ``status``, ``issue_code`` and ``code``."""

    status = 400
    issue_code = "invalid"
    code = "ror.invalid"

    def __init__(self, message: str, *, expression: str | list[str] | None = None,
                 issues: list[Issue] | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        if isinstance(expression, str):
            expression = [expression]
        self.expression = expression or []
        self.issues: list[Issue] = issues or [Issue("error", self.issue_code, message, list(self.expression))]
        self.headers = headers or {}


class InvalidRequest(RorError):
    """The request is malformed (body, header, parameter value)."""

    code = "ror.invalid-request"


class InvalidSearch(InvalidRequest):
    """A search parameter value, modifier or prefix cannot be understood."""

    code = "ror.invalid-search"


class UnknownSearchParameter(InvalidRequest):
    """A search parameter is not supported on this resource type (strict handling)."""

    issue_code = "not-supported"
    code = "ror.unknown-search-parameter"


class InvalidResource(RorError):
    """The submitted resource is not acceptable (structure, type, id mismatch)."""

    code = "ror.invalid-resource"


class UnprocessableResource(RorError):
    """The resource parses but breaks a rule of the ROR profiles."""

    status = 422
    issue_code = "processing"
    code = "ror.unprocessable"


class BusinessRule(RorError):
    """A domain rule refuses the operation (for instance an invalid capacity indicator)."""

    issue_code = "business-rule"
    code = "ror.business-rule"


class PatchError(RorError):
    """A patch operation cannot be applied."""

    issue_code = "processing"
    code = "ror.patch"
    status = 422


class PatchTargetNotFound(PatchError):
    """A patch ``replace``/``delete`` path selects nothing."""

    status = 404
    issue_code = "not-found"
    code = "ror.patch-target-not-found"


class NotFound(RorError):
    status = 404
    issue_code = "not-found"
    code = "ror.not-found"


class UnsupportedResourceType(NotFound):
    code = "ror.unsupported-type"
    issue_code = "not-supported"


class Forbidden(RorError):
    """The caller is known but not allowed this operation (write rights per establishment…)."""

    status = 403
    issue_code = "forbidden"
    code = "ror.forbidden"


class MethodNotAllowed(RorError):
    status = 405
    issue_code = "not-supported"
    code = "ror.method-not-allowed"


class MultipleMatches(RorError):
    status = 412
    issue_code = "multiple-matches"
    code = "ror.multiple-matches"


class PreconditionFailed(RorError):
    """If-Match does not name the current version."""

    status = 412
    issue_code = "conflict"
    code = "ror.version-conflict"


class UnsupportedMediaType(RorError):
    status = 415
    issue_code = "not-supported"
    code = "ror.unsupported-media-type"


class NotAcceptable(RorError):
    status = 406
    issue_code = "not-supported"
    code = "ror.not-acceptable"


class PayloadTooLarge(RorError):
    status = 413
    issue_code = "too-costly"
    code = "ror.payload-too-large"


class TooCostly(RorError):
    """A search or include would exceed a configured limit."""

    issue_code = "too-costly"
    code = "ror.too-costly"


class InputFileError(RorError):
    """A file given to the CLI cannot be read or parsed."""

    code = "ror.input-file"


class Unauthorized(RorError):
    """No valid credentials: missing, expired, revoked or mis-bound token, refused client certificate.

    The API adds ``WWW-Authenticate`` (RFC 6750) through ``headers``.
    """

    status = 401
    issue_code = "login"
    code = "ror.unauthorized"


class TooManyRequests(RorError):
    """The application exceeded its rate limit; ``Retry-After`` (seconds) says when to come back."""

    status = 429
    issue_code = "throttled"
    code = "ror.too-many-requests"


class Conflict(RorError):
    """The thing to create already exists (an application id, a registered certificate)."""

    status = 409
    issue_code = "duplicate"
    code = "ror.conflict"
