"""Keyguard: keeps exchange API keys and the bots that use them inside a declared safety envelope."""

__version__ = "0.1.0"
