"""Personal messages: templates, triggers, consent, quiet hours, a frequency cap, an outbox."""
