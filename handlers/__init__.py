"""authbus handlers."""
