"""Tabular methods: value tables indexed by discrete states, learned from each transition."""
