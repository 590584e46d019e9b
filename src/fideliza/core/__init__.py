"""Pure core: points, money, clock, ids and errors. No I/O, no SQLAlchemy, no FastAPI."""
