"""CLI sub-commands of the domains that came after the foundation (one module each)."""
