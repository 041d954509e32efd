"""Validation: run every artifact on its host runtime and compare it with the reference."""
