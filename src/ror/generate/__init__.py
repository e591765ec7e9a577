"""Synthetic national data in the real input formats, for load and consolidation at scale.

``ror generate`` writes, under one output folder: the raw FINESS open-data stock file, the RPPS
``PS_LibreAcces_Personne_activite`` extraction, and per region a FHIR NDJSON extract and an IHE CSD
exposure-model file, plus ``manifest.json``. See ``docs/generator.md``.
"""

VERSION = "1.0"
