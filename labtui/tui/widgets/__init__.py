"""Widgets of the labtui app: the container table and the tabs of the container screen."""
