"""duly's JSON API: FastAPI routes over services that check who may do what."""
