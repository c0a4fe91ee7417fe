"""Attacks: concrete adversarial inputs, the lower-bound side of the ladder."""
