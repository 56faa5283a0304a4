"""Offline sketch+text -> image pairs from package registries: sources, render, sketches, colours, captions, prepare,
folders, pairs (the commands: cli.py, `python -m distillation.data`). The names other modules use are re-exported
here; the package never imports distillation.pool (pool.py reads prepared pairs; only cli.py runs it)."""

from distillation.data.captions import caption, concept_key, concept_name, embed_captions, is_heldout
from distillation.data.colours import colour_words, recolour
from distillation.data.errors import DataError
from distillation.data.folders import (
    FOLDER_CACHE,
    FOLDER_SUFFIXES,
    caption_from_name,
    check_folder_sketch,
    folder_sketches,
    folder_summary,
    list_images,
    prepare_folder,
    read_caption,
)
from distillation.data.pairs import SketchPairs, contact_sheet
from distillation.data.prepare import DEFAULT_OUT, make_pair, prepare
from distillation.data.render import svg_renderer
from distillation.data.sketches import augment_sketch, freehand_sketches
from distillation.data.sources import DEFAULT_CACHE, SOURCES, Item, fetch_source
from pipelines.hed import HED

__all__ = [
    "DEFAULT_CACHE",
    "DEFAULT_OUT",
    "FOLDER_CACHE",
    "FOLDER_SUFFIXES",
    "HED",
    "SOURCES",
    "DataError",
    "Item",
    "SketchPairs",
    "augment_sketch",
    "caption",
    "caption_from_name",
    "check_folder_sketch",
    "colour_words",
    "concept_key",
    "concept_name",
    "contact_sheet",
    "embed_captions",
    "fetch_source",
    "folder_sketches",
    "folder_summary",
    "freehand_sketches",
    "is_heldout",
    "list_images",
    "make_pair",
    "prepare",
    "prepare_folder",
    "read_caption",
    "recolour",
    "svg_renderer",
]
