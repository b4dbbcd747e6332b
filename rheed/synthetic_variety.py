"""Pattern variety for synthetic RHEED (`make_synthetic_rheed.py --variety`).

The default generator draws one material-like look: 8-13 evenly spaced streaks under a Laue arc. Real
growth covers far more, and a classifier (or a pre-training corpus) should not learn one look. With
`--variety` every run redraws its geometry over wide ranges (`widen`), and runs of three more pattern
kinds are added, each in its own fine-class folder:

- ``laue_smooth`` (binary: smooth). A very flat, well-ordered surface: the rods are so sharp that only
  their intersections with the Laue circles light up, a ring of dots on an arc, with strong Kikuchi lines.
  Dots, but smooth: the classic false "rough" call.
- ``ring_rough`` (binary: rough). A polycrystalline film: Debye-Scherrer rings around the transmitted
  beam, arcs when the grains share a fibre texture, sometimes with weak transmission spots.
- ``amorphous_halo`` (ambiguous, no binary label). An amorphous layer (oxide, contamination): only a broad
  diffuse halo. Neither 2D layer growth nor 3D islands; `split_dataset_simple.py` leaves these frames out of
  a binary split (and says so) and keeps them with `--classes fine`.

The binary rule: a frame is smooth when its pattern comes from a flat crystalline surface (streaks, Laue
dots), rough when transmission through 3D crystallites dominates (spot grids, chevrons, rings).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from rheed.synthetic import RheedParams, layer_progress

VARIETY_CLASSES = ('laue_smooth', 'ring_rough', 'amorphous_halo')
# run kind -> its fine class; every frame of such a run has that class
KIND_CLASS = {'laue': 'laue_smooth', 'ring': 'ring_rough', 'halo': 'amorphous_halo'}

# ring radii relative to the first ring: sqrt(h^2 + k^2 + l^2) of the allowed reflections
RING_SEQUENCES = {'fcc': (3, 4, 8, 11, 12, 16), 'bcc': (2, 4, 6, 8, 10, 12), 'diamond': (3, 8, 11, 16, 19, 24)}


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(math.log(low), math.log(high))))


def widen(p: RheedParams, rng: np.random.Generator) -> RheedParams:
    """Redraws a run's geometry, glow and brightness over ranges covering many materials and set-ups:
    3 to 20 streaks across the frame, short to long streaks, thin to broad ones, small and large Laue
    circles, dim and glowing backgrounds."""
    s = min(p.width / 656, p.height / 492)
    spacing = p.width * _log_uniform(rng, 0.05, 0.25)
    y_shadow = p.height * rng.uniform(0.7, 0.95)
    laue_radius = p.height * rng.uniform(0.2, 0.6)
    spot_sx = max(s * _log_uniform(rng, 1.5, 7.0), 0.6)
    return dataclasses.replace(
        p,
        x0=p.width * (0.5 + rng.uniform(-0.08, 0.08)),
        y_shadow=y_shadow,
        laue_radius=laue_radius,
        laue1_radius=laue_radius * rng.uniform(1.4, 2.2),
        spacing=spacing,
        recon=int(rng.choice([1, 1, 2, 2, 3, 4, 5])),
        streak_sigma=max(s * _log_uniform(rng, 0.8, 4.0), 0.5),
        streak_length=p.height * _log_uniform(rng, 0.02, 0.3),
        row_spacing=spacing * rng.uniform(0.6, 1.6),
        spot_sigma=(spot_sx, spot_sx * rng.uniform(0.9, 2.2)),
        spot_envelope=(laue_radius * rng.uniform(0.6, 1.4), p.height * rng.uniform(0.1, 0.3)),
        bg_glow=rng.uniform(0.03, 0.4),
        bg_level=rng.uniform(0.01, 0.12),
        rotation=rng.uniform(-4.0, 4.0),
        beam=_log_uniform(rng, 0.3, 1.2),
    )


def kind_params(kind: str, p: RheedParams, rng: np.random.Generator) -> RheedParams:
    """The settings of a run of one of the extra kinds, starting from a (widened) layer-run draw."""
    s = min(p.width / 656, p.height / 492)
    if kind == 'laue':
        kikuchi = tuple((a, o, amp * rng.uniform(1.5, 3.0), w) for a, o, amp, w in p.kikuchi)
        return dataclasses.replace(p, streak_length=p.height * rng.uniform(0.004, 0.012),
                                   streak_amp=p.streak_amp * rng.uniform(1.2, 2.0),
                                   streak_sigma=max(s * rng.uniform(1.5, 3.0), 0.5),
                                   recon=int(rng.choice([1, 2])), kikuchi=kikuchi,
                                   base_rough=rng.uniform(0.0, 0.04), look_shift=0.0)
    if kind == 'ring':
        first = p.height * rng.uniform(0.12, 0.3)
        seq = RING_SEQUENCES[str(rng.choice(sorted(RING_SEQUENCES)))]
        radii = tuple(first * math.sqrt(n / seq[0]) for n in seq)
        textured = rng.uniform() < 0.5
        return dataclasses.replace(p, ring_amp=rng.uniform(0.15, 0.45), ring_radii=radii,
                                   ring_sigma=max(s * rng.uniform(1.5, 4.0), 0.6),
                                   ring_texture=rng.uniform(0.3, 0.9) if textured else 0.0,
                                   spot_amp=p.spot_amp * rng.uniform(0.0, 0.4), chevron=0.0, look_shift=0.0)
    if kind == 'halo':
        return dataclasses.replace(p, halo_amp=rng.uniform(0.1, 0.3), halo_radius=p.height * rng.uniform(0.15, 0.35),
                                   halo_sigma=p.height * rng.uniform(0.05, 0.12), spot_amp=0.0, chevron=0.0,
                                   look_shift=0.0)
    raise ValueError(f"unknown run kind {kind!r}; expected one of {', '.join(KIND_CLASS)}")


def kind_progress(kind: str, p: RheedParams, n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Roughness of each frame: flat for Laue runs, fully 3D (no streaks, no specular spot) otherwise."""
    if kind == 'laue':
        return layer_progress(p, n_frames)
    return rng.uniform(0.92, 1.0, size=n_frames)


def extra_runs(sequences: int) -> int:
    """Runs of each extra kind: a quarter of the runs per base kind, at least one."""
    return max(1, sequences // 4)
