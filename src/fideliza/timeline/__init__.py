"""The member timeline: everything that happened to a member, newest first."""
