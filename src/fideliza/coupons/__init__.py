"""Coupon campaigns, unguessable codes, validation and redemption against a basket."""
