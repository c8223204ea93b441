"""Detector service: faust agents around the plain-Python detection logic in ``logic``."""
