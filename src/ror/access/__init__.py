"""The trust space: registered applications, certificate-bound tokens, rate limits and the audit trail.

The profile 0–5 redaction and per-establishment write checks live in the FHIR service layer and
consume the ``Principal`` set here (``ror.access.principal``).
"""
