"""authbus domain."""
