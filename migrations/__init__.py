"""Alembic migrations of the esl-guard database (installed as ``esl_guard.migrations``)."""
