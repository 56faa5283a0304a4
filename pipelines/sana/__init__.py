"""The SANA-Sprint + ControlNet backend, one idea per module (notes/sana_sprint.md)."""
