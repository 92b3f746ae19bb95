"""Planning methods: dynamic programming over an environment's known transition model."""
