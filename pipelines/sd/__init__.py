"""The SD-family backend (SD-Turbo, SDXL-Turbo, SD 1.5 + LCM-LoRA) with a ControlNet, one idea per module."""
