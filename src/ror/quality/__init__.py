"""Data quality: NOS conformity, the ANS completeness criterion, ROR indicators and anomalies (Task)."""
