"""Core services every role uses: clocks, config, logs, lifecycle, metrics, service shell.

Import rule: tectra.core imports nothing above it (only tectra.schema and the standard library
plus third-party packages).
"""
