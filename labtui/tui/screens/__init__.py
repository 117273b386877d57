"""Screens of the labtui app: dashboard, container, run form, alerts, attack lab, help."""
