"""gtn_core: Generative Teaching Networks as a small, framework-free library (no Sacred, no UI)."""
