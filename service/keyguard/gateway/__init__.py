"""Keyguard gateway: a Binance-spot-compatible endpoint that puts the execution envelope in front of any bot."""
