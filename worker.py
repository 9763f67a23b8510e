"""Start duly's Temporal worker."""
