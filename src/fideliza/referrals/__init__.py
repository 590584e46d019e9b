"""Referrals: member codes, links between referrer and referred, rewards once qualified."""
