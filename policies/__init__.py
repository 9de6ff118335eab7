"""Placement policies: baselines, the exact optimum and trained RLlib policies."""
