"""The runtime's network face: what other programs and people reach over HTTP.

For now the health and readiness checks of a worker; the control plane comes here.
"""
