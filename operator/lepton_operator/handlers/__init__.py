"""Thin kopf wiring: observe -> plan -> apply. Importing this package registers the handlers."""

from . import inferenceservice, trainingjob  # noqa: F401
