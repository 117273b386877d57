"""Lessons: step-by-step walks through the engine's mechanisms, with checks (a later issue)."""
