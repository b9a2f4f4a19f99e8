"""authbus infra."""
