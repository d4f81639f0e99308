"""ATM firmware simulator and edge agent."""

__version__ = "0.1.0"
