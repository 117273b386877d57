"""labtui's container runtime. Imports nothing from the UI; usable on its own.

The public facade is :mod:`engine.api`; every kernel operation is recorded as a step
(:mod:`engine.steps`) by the code that performs it.
"""
