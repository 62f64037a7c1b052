"""Serving a trained model over HTTP with LitServe: ``POST /predict`` and a draw-a-digit page at ``/``."""
