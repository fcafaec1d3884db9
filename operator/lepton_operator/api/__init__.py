"""Pydantic models: the single source of truth for the CRDs."""
