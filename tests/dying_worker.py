"""A stand-in experiment module whose import ends its process outright, as a stop signal ends a pool worker that is
still starting (tests/test_study.py)."""
import os

os._exit(3)
