"""Webhooks: endpoints a program registers, and the signed delivery of its outbox events."""
