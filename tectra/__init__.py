"""Tectra: a kernel-bypass trading gateway appliance (feed, risk gateway, kill switch, journals)."""

__version__ = "0.1.0"
