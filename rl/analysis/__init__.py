"""Across-seed statistics, figures and videos, from the files under results/ alone."""
