"""authbus projections."""
