"""Rate-limit counters shared by every worker (a database table)."""
