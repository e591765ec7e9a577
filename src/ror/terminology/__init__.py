"""NOS terminologies (TRE code systems, JDV value sets): loading, versions, lookups, validation of codes."""
