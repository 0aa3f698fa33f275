"""twin-ops: an LLM twin, end to end."""
