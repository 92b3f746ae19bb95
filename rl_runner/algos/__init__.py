"""Algorithms by family: algos/<family>/<name>.py holds class <NAME>, selected by algo=<name>."""
