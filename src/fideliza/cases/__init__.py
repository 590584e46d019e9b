"""Complaints (cases) from open to resolution, with SLA, gestures and follow-up."""
