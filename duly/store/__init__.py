"""duly's database: sqlmodel tables, engines and sessions, and the queries activities run."""
