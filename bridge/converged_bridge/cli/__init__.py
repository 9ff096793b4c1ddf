"""Command-line tools for cluster users."""
