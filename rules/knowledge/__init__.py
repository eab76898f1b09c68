"""Versioned clinical knowledge: TOML and TSV files beside this module."""
