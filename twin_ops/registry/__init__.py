"""Model registry: versions, metadata and aliases (candidate, production, previous)."""
