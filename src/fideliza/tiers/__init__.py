"""tiers domain."""
