"""Thin kopf wiring: observe -> plan -> apply. Importing this package registers the handlers."""

from . import prices, trainingjob  # noqa: F401
