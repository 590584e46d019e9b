"""Fideliza: an open-source customer-loyalty platform."""

__version__ = "0.1.0"
