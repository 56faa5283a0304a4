"""Distillation methods behind the Method contract, one class per file; METHODS maps CLI names to classes."""

from distillation.methods.base import Method, RoleSpec
from distillation.methods.dmd2 import DMD2
from distillation.methods.flow_matching import FlowMatching
from distillation.methods.guidance import GuidanceDistillation
from distillation.methods.ladd import LADD
from distillation.methods.lcm import LCM
from distillation.methods.paired_ladd import PairedLADD
from distillation.methods.scm import SCM
from distillation.methods.scm_ladd import SCMLADD
from distillation.methods.twinflow import TwinFlow

METHODS: dict[str, type[Method]] = {
    "scm": SCM,
    "ladd": LADD,
    "scm_ladd": SCMLADD,
    "dmd2": DMD2,
    "twinflow": TwinFlow,
    "lcm": LCM,
    "paired_ladd": PairedLADD,  # fine-tuning a student on a folder of pictures
    "flow_matching": FlowMatching,  # teacher pre-training on the same trainer
    "guidance": GuidanceDistillation,  # CFG folded into one pass (a start for sCM)
}

__all__ = [
    "DMD2",
    "FlowMatching",
    "GuidanceDistillation",
    "LADD",
    "LCM",
    "METHODS",
    "SCM",
    "SCMLADD",
    "Method",
    "PairedLADD",
    "RoleSpec",
    "TwinFlow",
]
