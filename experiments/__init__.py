"""Experiments behind the tables and figures of docs/; run as modules (``python -m experiments.ablation ...``)."""
