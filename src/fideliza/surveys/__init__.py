"""Surveys: NPS, CSAT and custom questions; invitations with single-use links; scores."""
