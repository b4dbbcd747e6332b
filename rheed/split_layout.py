"""The layout every split shares: split names, the binary label of each fine class, the manifest columns
and one frame's record (used by rheed.split, its report and similarity modules, and the held-out guard)."""
from __future__ import annotations

from dataclasses import dataclass

SPLITS = ('train', 'val', 'test')
HELD_OUT_SPLITS = ('val', 'test')
# flat crystalline surface (streaks, Laue dots) -> smooth; transmission through 3D crystallites (spot grids,
# chevrons, polycrystalline rings) -> rough (rheed.synthetic_variety explains the extra classes)
FINE_TO_BINARY = {'layer_smooth': 'smooth', 'island_smooth': 'smooth', 'island_rough': 'rough',
                  'laue_smooth': 'smooth', 'ring_rough': 'rough'}
# no binary label (neither 2D layer growth nor 3D islands; the mixed frames around an island run's
# transition): left out of binary splits, kept with --classes fine
AMBIGUOUS_CLASSES = ('amorphous_halo', 'island_transition')
MANIFEST_COLUMNS = ('path', 'source', 'fine_class', 'label', 'sequence', 'frame', 'split')


@dataclass
class SplitFrame:
    source: str                 # path of the original file
    rel: str                    # path inside its class folder (posix separators)
    fine_class: str
    sequence: str | None
    frame: int | None
    split: str | None = None    # None: not assigned / left out
    excluded: str | None = None  # why it was left out ('gap', 'conflict')


def label_of(fine_class: str, classes: str) -> str:
    return FINE_TO_BINARY[fine_class] if classes == 'binary' else fine_class
