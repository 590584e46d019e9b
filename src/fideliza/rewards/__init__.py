"""Rewards catalog and two-phase redemptions (hold points and stock → capture | release)."""
