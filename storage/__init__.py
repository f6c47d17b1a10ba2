"""Persistence: SQLAlchemy models, the database handle, durable jobs, migrations, Redis helpers."""
