"""Experiments behind the README's tables and figures; run as modules (``python -m experiments.ablation ...``)."""
