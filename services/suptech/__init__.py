"""suptech: supervisory-technology risk monitor for financial regulators."""

__version__ = "0.1.0"
