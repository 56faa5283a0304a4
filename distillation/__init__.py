"""Offline distillation of flow-matching teachers into 1-4 step students (methods, tangents, the 2-D toy proof)."""
