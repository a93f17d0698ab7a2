"""Cascades: the routes (which lines or pages are doubtful), the run of the stages, and what a cascade costs."""
