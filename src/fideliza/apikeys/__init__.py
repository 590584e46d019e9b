"""API keys: per-program secrets with scopes, and the idempotency records of their requests."""
