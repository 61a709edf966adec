"""The durable task store (SQLAlchemy 2): SQLite by default, PostgreSQL for several machines."""
