"""Attacks: callables that return the Byzantine rows of a round."""
