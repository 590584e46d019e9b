"""purchases domain."""
