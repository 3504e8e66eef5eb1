"""Evaluations of trained teachers: robustness of learners to corruptions and attacks."""
