"""Storage tests: migrations, durable jobs, encryption, on SQLite and PostgreSQL."""
