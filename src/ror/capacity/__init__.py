"""Bed and place availability: capacity indicators, the ROR capacity PATCH protocol, history, summaries."""
