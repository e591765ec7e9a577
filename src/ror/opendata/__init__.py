"""Open data: the public ROR files per region (IHE CSD XML exposure model, CSV, NDJSON) and their manifest."""
