"""Integration tests against a real FreeSWITCH (see README.md)."""
