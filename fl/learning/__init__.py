"""Data, models, local training, evaluation and the content-addressed update store (pure: no chain)."""
