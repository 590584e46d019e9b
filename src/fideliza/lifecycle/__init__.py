"""Lifecycle bonuses: welcome, birthday, membership anniversary, customer appreciation days."""
