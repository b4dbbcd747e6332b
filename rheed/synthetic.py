"""Synthetic RHEED growth videos: the project's embedded default data.

A frame is rendered from per-sequence parameters (`RheedParams`, drawn by `random_params`) and a
roughness `progress` in [0, 1]:

- progress ~ 0 (2D layer growth): sharp vertical streaks whose brightest points lie on the zeroth
  Laue circle (centred on the shadow edge, specular spot at its top), weaker fractional-order
  streaks, spots of the first Laue circle, a bright specular spot, thin Kikuchi lines and a smooth
  diffuse background. Specular and streak intensities oscillate with the monolayer period.
- progress rising towards `ROUGH_THRESHOLD` (early 3D islands): streaks get modulated along their
  length, weak spots appear on them, Kikuchi lines fade, the diffuse background rises.
- progress above `ROUGH_THRESHOLD` up to 1 (late 3D islands): a transmission pattern, a grid of round
  or elongated spots (optionally chevrons), no streaks, a high diffuse background.

Each run also has a small `look_shift`: its pattern looks a little rougher or smoother than its
label says, as when a person picks the transition frame by eye (zero in `make_growth_run`).

Every frame has a dark shadow edge at the bottom, a beam brightness that drifts along the run,
a small camera rotation, phosphor blur (Gaussian), shot (Poisson) noise and read noise. The pattern
is left-right symmetric about the specular spot (up to the rotation and a small intensity
asymmetry), never up-down symmetric.

Public API
----------
``random_params(rng, width=656, height=492, run_frames=100) -> RheedParams``
    Draws one sequence's geometry, beam, optics and camera settings.
``render_frame(params, progress, rng, t=0.0) -> np.ndarray``
    float32 (height, width) in camera full-scale units [0, 1]; `t` is the frame index within the
    run (drives beam drift and growth oscillations); `rng` draws only the noise.
``quantize(frame, bits=8)`` (uint8) or ``quantize(frame, bits=12)`` (uint16)
    Quantise a rendered frame (8-bit PNG data, or 12-bit camera data in a uint16 container).
``make_growth_run(n_frames, transition_frame, size=(656, 492), seed=0) -> list[np.ndarray]``
    One island growth run as uint8 frames; frames before `transition_frame` are smooth
    (progress < ROUGH_THRESHOLD), frames from it on are rough.
``plan_runs(scale=0.1, sequences=None) -> list[RunPlan]``
    Sequence ids and frame counts for a data set whose class sizes follow the real data
    (2003 / 567 / 671 frames) times `scale`.
``generate_dataset(out, scale=0.1, sequences=None, seed=0, tiff16=False, width=656, height=492,
overwrite=False, camera_randomize=False, variety=False) -> dict``
    Writes ``out/{layer_smooth,island_smooth,island_rough}/seqNNN_FFFFFF.png`` (``.tif`` with
    `tiff16`) and ``out/synthetic_frames.csv`` (file, class, sequence, frame, progress); `variety` adds
    the wide ranges and the laue_smooth, ring_rough and amorphous_halo runs of rheed.synthetic_variety.
``save_contact_sheet(data_dir, out_png, per_class=4)``
    A PNG grid of generated frames, one row per class.

Every run draws from its own ``np.random.default_rng([seed, run_index])``, so the same seed gives
identical bytes.
"""
import csv
import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import affine_transform, gaussian_filter

from rheed.errors import UserError

CLASS_NAMES = ("layer_smooth", "island_smooth", "island_rough")
REAL_COUNTS = {"layer_smooth": 2003, "island_smooth": 567, "island_rough": 671}
ROUGH_THRESHOLD = 0.5
DEFAULT_SEQUENCES = 4
FILE_RE = re.compile(r"^seq\d{3}_\d{6}\.(png|tif)$")
# zlib level 1: the same pixels as the default level 6, 3.5x faster to write, files ~15 % larger
PNG_COMPRESS_LEVEL = 1

_REF_WIDTH, _REF_HEIGHT = 656, 492


@dataclass(frozen=True)
class RheedParams:
    """Settings of one growth run; lengths in pixels, intensities in camera full-scale units."""
    width: int
    height: int
    x0: float                  # column of the specular spot (symmetry axis)
    y_shadow: float            # row of the shadow edge (sample horizon)
    laue_radius: float         # zeroth Laue circle radius; specular spot at y_shadow - laue_radius
    laue1_radius: float        # first Laue circle radius
    laue1_offset: float        # first-zone rods shifted by this fraction of the spacing
    spacing: float             # integer-order streak spacing
    recon: int                 # surface reconstruction order (fractional streaks at 1/recon)
    streak_amp: float
    streak_sigma: float        # streak half-width (Gaussian sigma)
    streak_length: float       # Lorentzian half-length of a streak along the rod
    specular_amp: float
    specular_sigma: tuple      # (sigma_x, sigma_y)
    row_spacing: float         # vertical spacing of transmission spots
    centered: bool             # centred-rectangular transmission lattice
    spot_amp: float
    spot_sigma: tuple          # (sigma_x, sigma_y); sigma_y > sigma_x gives elongated spots
    spot_envelope: tuple       # (ex, ey) Gaussian envelope of the transmission spots
    chevron: float             # chevron arm strength (0 = none)
    chevron_angle: float       # arm angle from the vertical, radians
    kikuchi: tuple             # ((angle_from_horizontal, x_offset, amplitude, width), ...)
    bg_level: float
    bg_glow: float
    bg_rough_gain: float       # diffuse background grows by this factor times progress
    dark_level: float          # stray light below the shadow edge
    shadow_width: float
    lr_asym: float             # small left/right intensity asymmetry
    rotation: float            # camera rotation, degrees
    blur: float                # phosphor blur sigma
    beam: float                # mean beam brightness of the run
    drift: tuple               # ((amplitude, period_frames, phase), ...) beam drift terms
    drift_trend: float         # linear drift over the run
    run_frames: int
    ml_period: float           # monolayer oscillation period, frames
    osc_amp: float
    osc_phase: float
    osc_decay: float           # oscillation damping time, frames
    base_rough: float          # roughness of a 2D layer run
    look_shift: float          # the pattern looks this much rougher than the label says (labeller's judgement)
    photons: float             # photons at full scale (sets shot noise)
    read_noise: float
    black_level: float
    # polycrystalline rings and amorphous halo (rheed.synthetic_variety; zero in the default look)
    ring_amp: float = 0.0
    ring_radii: tuple = ()     # Debye-Scherrer ring radii, pixels from the transmitted beam
    ring_sigma: float = 2.0
    ring_texture: float = 0.0  # 0: uniform rings, towards 1: arcs (fibre texture)
    halo_amp: float = 0.0
    halo_radius: float = 0.0
    halo_sigma: float = 1.0


@dataclass(frozen=True)
class RunPlan:
    """One growth run: `n_smooth` frames then `n_rough` frames (layer runs have n_rough = 0); runs of the
    extra kinds of rheed.synthetic_variety have `n_other` frames of their own fine class."""
    kind: str                  # 'layer', 'island', or with variety 'laue', 'ring', 'halo'
    sequence: int
    n_smooth: int
    n_rough: int
    n_other: int = 0

    @property
    def n_frames(self) -> int:
        return self.n_smooth + self.n_rough + self.n_other


def _smoothstep(a: float, b: float, x: float) -> float:
    u = min(max((x - a) / (b - a), 0.0), 1.0)
    return u * u * (3.0 - 2.0 * u)


def random_params(rng: np.random.Generator, width: int = _REF_WIDTH, height: int = _REF_HEIGHT,
                  run_frames: int = 100) -> RheedParams:
    """Draws the settings of one growth run."""
    s = min(width / _REF_WIDTH, height / _REF_HEIGHT)
    y_shadow = height * rng.uniform(0.80, 0.92)
    laue_radius = height * rng.uniform(0.30, 0.46)
    spacing = width * rng.uniform(0.075, 0.12)
    spot_sx = max(s * rng.uniform(2.5, 5.0), 0.6)
    elongated = rng.uniform() < 0.5
    spot_sy = spot_sx * (rng.uniform(1.4, 2.0) if elongated else rng.uniform(0.9, 1.2))
    specular_sx = max(s * rng.uniform(3.0, 5.5), 0.6)
    kikuchi = tuple(
        (math.radians(rng.uniform(35.0, 75.0)), width * rng.uniform(0.02, 0.35),
         rng.uniform(0.015, 0.045), max(s * rng.uniform(0.8, 1.5), 0.5))
        for _ in range(int(rng.integers(1, 4))))
    drift = ((rng.uniform(0.03, 0.12), run_frames * rng.uniform(0.6, 2.0), rng.uniform(0, 2 * np.pi)),
             (rng.uniform(0.01, 0.05), run_frames * rng.uniform(0.1, 0.3), rng.uniform(0, 2 * np.pi)))
    ml_period = rng.uniform(6.0, 20.0)
    return RheedParams(
        width=width, height=height,
        x0=width * (0.5 + rng.uniform(-0.04, 0.04)),
        y_shadow=y_shadow,
        laue_radius=laue_radius,
        laue1_radius=laue_radius * rng.uniform(1.5, 2.1),
        laue1_offset=float(rng.choice([0.0, 0.5])),
        spacing=spacing,
        recon=int(rng.choice([1, 2, 2, 3, 4])),
        streak_amp=rng.uniform(0.5, 0.9),
        streak_sigma=max(s * rng.uniform(1.2, 2.5), 0.5),
        streak_length=height * rng.uniform(0.05, 0.12),
        specular_amp=rng.uniform(0.8, 1.3),
        specular_sigma=(specular_sx, specular_sx * rng.uniform(1.2, 2.0)),
        row_spacing=spacing * rng.uniform(0.8, 1.3),
        centered=bool(rng.uniform() < 0.6),
        spot_amp=rng.uniform(0.35, 0.6),
        spot_sigma=(spot_sx, spot_sy),
        spot_envelope=(laue_radius * rng.uniform(0.7, 1.1), height * rng.uniform(0.15, 0.25)),
        chevron=rng.uniform(0.3, 0.7) if rng.uniform() < 0.4 else 0.0,
        chevron_angle=math.radians(rng.uniform(40.0, 65.0)),
        kikuchi=kikuchi,
        bg_level=rng.uniform(0.03, 0.08),
        bg_glow=rng.uniform(0.12, 0.3),
        bg_rough_gain=rng.uniform(0.1, 0.7),
        dark_level=rng.uniform(0.005, 0.02),
        shadow_width=max(s * rng.uniform(1.5, 3.0), 0.5),
        lr_asym=rng.uniform(-0.08, 0.08),
        rotation=rng.uniform(-2.5, 2.5),
        blur=max(s * rng.uniform(0.8, 2.0), 0.4),
        beam=float(np.exp(rng.uniform(np.log(0.4), np.log(1.2)))),
        drift=drift,
        drift_trend=rng.uniform(-0.15, 0.15),
        run_frames=int(run_frames),
        ml_period=ml_period,
        osc_amp=rng.uniform(0.25, 0.6),
        osc_phase=rng.uniform(0, 2 * np.pi),
        osc_decay=ml_period * rng.uniform(3.0, 10.0),
        base_rough=rng.uniform(0.0, 0.12),
        look_shift=rng.uniform(-0.06, 0.06),
        photons=float(np.exp(rng.uniform(np.log(200.0), np.log(3000.0)))),
        read_noise=rng.uniform(0.002, 0.008),
        black_level=rng.uniform(0.0, 0.03),
    )


def _gauss(u: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * (u / sigma) ** 2)


def _beam(p: RheedParams, t: float) -> float:
    value = 1.0 + p.drift_trend * (t / max(p.run_frames - 1, 1) - 0.5)
    for amp, period, phase in p.drift:
        value += amp * math.sin(2 * math.pi * t / period + phase)
    return p.beam * value


def _oscillation(p: RheedParams, t: float, rho: float) -> float:
    """Fraction (0..1) of the intensity dip of the monolayer oscillation at time t."""
    amp = p.osc_amp * (1.0 - _smoothstep(0.05, 0.45, rho)) * math.exp(-t / p.osc_decay)
    return amp * 0.5 * (1.0 - math.cos(2 * math.pi * t / p.ml_period + p.osc_phase))


def _streak_factors(p: RheedParams, rho: float, dip: float, y: np.ndarray, x: np.ndarray):
    """Separable streak profiles: returns (H, K) vertical and (W, K) horizontal factors."""
    weight = p.streak_amp * (1.0 - _smoothstep(0.3, 0.85, rho)) * (1.0 - 0.4 * dip)
    if weight <= 1e-4:
        return None
    sigma = p.streak_sigma * (1.0 + 1.2 * rho)
    length = p.streak_length * (1.0 - 0.6 * rho)
    modulation = min(_smoothstep(0.1, 0.65, rho), 0.9)
    bumps = {shift: _row_bumps(p, y, shift) for shift in (0.0, 0.5)} if modulation > 0 else {}
    ys, xs = [], []
    n_max = int(p.width / p.spacing) + 1
    for zone, radius, offset, zone_amp in ((0, p.laue_radius, 0.0, 1.0),
                                           (1, p.laue1_radius, p.laue1_offset, 0.3)):
        step = 1.0 / p.recon if zone == 0 else 1.0
        for k in range(-n_max * p.recon, n_max * p.recon + 1):
            n = k * step + offset
            dx = n * p.spacing
            if abs(dx) >= radius * 0.98:
                continue
            fractional = abs(n - round(n)) > 1e-6 and zone == 0
            amp = weight * zone_amp * (0.3 if fractional else 1.0) * math.exp(-0.5 * (dx / (0.8 * p.laue_radius)) ** 2)
            if amp < 1e-3:
                continue
            y_hit = p.y_shadow - math.sqrt(radius ** 2 - dx ** 2)
            zone_length = length if zone == 0 else 0.4 * length
            profile = 1.0 / (1.0 + ((y - y_hit) / zone_length) ** 2)
            if modulation > 0:
                odd = p.centered and abs(n - round(n)) < 1e-6 and int(round(n)) % 2 == 1
                profile = profile * ((1.0 - modulation) + modulation * bumps[0.5 if odd else 0.0])
            ys.append(profile)
            xs.append(amp * _gauss(x - (p.x0 + dx), sigma))
    if not ys:
        return None
    return np.stack(ys, axis=1), np.stack(xs, axis=1)


def _row_bumps(p: RheedParams, y: np.ndarray, shift: float) -> np.ndarray:
    """Bumps at the 3D Bragg rows (shifted by `shift` rows); streaks break up at these rows."""
    rows = p.y_shadow - (np.arange(1, int(p.y_shadow / p.row_spacing) + 2) - shift) * p.row_spacing
    return _gauss(y[:, None] - rows[None, :], p.spot_sigma[1]).sum(axis=1)


def _spot_factors(p: RheedParams, rho: float, y: np.ndarray, x: np.ndarray):
    """Separable transmission spot grid: (H, M) @ (M, N) amplitudes @ (N, W)."""
    weight = p.spot_amp * _smoothstep(0.25, 0.9, rho)
    if weight <= 1e-4:
        return None
    n_cols = int(p.width / p.spacing) + 1
    cols = np.arange(-n_cols, n_cols + 1)
    n_rows = int(p.y_shadow / p.row_spacing) + 1
    rows = np.arange(1, 2 * n_rows + 1) * 0.5          # half rows for the centred lattice
    xc = p.x0 + cols * p.spacing
    yc = p.y_shadow - rows * p.row_spacing
    ex, ey = p.spot_envelope
    y_spec = p.y_shadow - p.laue_radius
    amps = np.exp(-0.5 * ((yc[:, None] - y_spec) / ey) ** 2 - 0.5 * ((xc[None, :] - p.x0) / ex) ** 2)
    integer_row = np.abs(rows - np.round(rows)) < 1e-6
    odd_col = (cols % 2) == 1
    if p.centered:
        keep = np.where(odd_col[None, :], ~integer_row[:, None], integer_row[:, None])
    else:
        keep = np.broadcast_to(integer_row[:, None], amps.shape)
    amps = weight * amps * keep
    grow = 1.0 + 0.6 * (1.0 - _smoothstep(0.5, 1.0, rho))  # spots sharpen as islands grow
    fy = _gauss(y[:, None] - yc[None, :], p.spot_sigma[1] * grow)
    fx = _gauss(x[:, None] - xc[None, :], p.spot_sigma[0] * grow)
    return fy, amps.astype(np.float32), fx, (yc, xc, amps)


def _add_chevrons(img: np.ndarray, p: RheedParams, strength: float, spots) -> None:
    """Adds V-shaped arms opening upwards from every visible transmission spot."""
    yc, xc, amps = spots
    arm = 0.45 * p.spacing
    half = int(math.ceil(arm)) + 2
    v, u = np.mgrid[-half:half + 1, -half:half + 1].astype(np.float32)   # v = row offset (up < 0)
    width = max(0.6 * p.spot_sigma[0], 0.6)
    kernel = np.zeros_like(u)
    for side in (-1.0, 1.0):
        dx, dy = side * math.sin(p.chevron_angle), -math.cos(p.chevron_angle)
        along = u * dx + v * dy
        across = u * dy - v * dx
        inside = (along > 0) & (along < arm)
        kernel += np.where(inside, np.exp(-0.5 * (across / width) ** 2) * (1.0 - along / arm), 0.0)
    kernel *= strength
    h, w = img.shape
    for i, j in zip(*np.nonzero(amps > 0.02 * amps.max())):
        r, c = int(round(yc[i])), int(round(xc[j]))
        r0, r1, c0, c1 = r - half, r + half + 1, c - half, c + half + 1
        if r1 <= 0 or c1 <= 0 or r0 >= h or c0 >= w:
            continue
        kr0, kc0 = max(0, -r0), max(0, -c0)
        kr1, kc1 = kernel.shape[0] - max(0, r1 - h), kernel.shape[1] - max(0, c1 - w)
        img[max(r0, 0):min(r1, h), max(c0, 0):min(c1, w)] += amps[i, j] * kernel[kr0:kr1, kc0:kc1]


def _add_kikuchi(img: np.ndarray, p: RheedParams, weight: float, y: np.ndarray, x: np.ndarray) -> None:
    """Thin bright lines with a dark companion, mirrored about the specular column."""
    y_spec = p.y_shadow - p.laue_radius
    for angle, offset, amp, width in p.kikuchi:
        for side in (-1.0, 1.0):
            # line through (x0 + side * offset, y_spec), tilted by `angle` from the horizontal
            nx, ny = math.sin(angle), side * math.cos(angle)
            dist = (x[None, :] - (p.x0 + side * offset)) * nx + (y[:, None] - y_spec) * ny
            u = dist / width
            # bright excess line with a darker deficiency side (one exponential for speed)
            img += weight * amp * np.exp(-0.5 * u * u) * (1.0 - 0.6 * side * u)


def _add_rings(img: np.ndarray, p: RheedParams, y: np.ndarray, x: np.ndarray) -> None:
    """Rings centred on the transmitted beam (at the shadow edge below the specular column): sharp
    Debye-Scherrer rings of a polycrystalline film (arcs when textured) and the broad halo of an
    amorphous one; the shadow edge hides their lower half."""
    dy, dx = y[:, None] - p.y_shadow, x[None, :] - p.x0
    r = np.sqrt(dx * dx + dy * dy)
    if p.ring_amp > 0:
        along = 1.0
        if p.ring_texture > 0:   # fibre texture: intensity gathered around the vertical
            cos_angle = np.abs(dy) / np.maximum(r, 1.0)
            along = (1.0 - p.ring_texture) + p.ring_texture * cos_angle ** 4
        for i, radius in enumerate(p.ring_radii):
            img += p.ring_amp * (0.85 ** i) * along * _gauss(r - radius, p.ring_sigma)
    if p.halo_amp > 0:
        img += p.halo_amp * _gauss(r - p.halo_radius, p.halo_sigma)


def render_clean(p: RheedParams, progress: float, t: float = 0.0) -> np.ndarray:
    """Noise-free, unblurred pattern (float32, camera full-scale units) at roughness `progress`
    (shifted by `p.look_shift`) and time `t` in frames."""
    rho = float(np.clip(progress + p.look_shift, 0.0, 1.0))
    y = np.arange(p.height, dtype=np.float32)
    x = np.arange(p.width, dtype=np.float32)
    dip = _oscillation(p, t, rho)
    y_spec = p.y_shadow - p.laue_radius

    # every separable term is a column of fy (H, K) and fx (W, K): image = fy @ fx.T
    bg = 1.0 + p.bg_rough_gain * rho + 0.15 * dip
    spec = p.specular_amp * (1.0 - 0.85 * _smoothstep(0.15, 0.8, rho)) * (1.0 - dip)
    flat = np.ones_like(x)
    fy = [np.full_like(y, p.bg_level * bg),
          p.bg_glow * bg * _gauss(y - (y_spec + 0.3 * p.laue_radius), 0.35 * p.height),
          0.05 * bg * (y / p.y_shadow) ** 3,                                     # inelastic glow near the horizon
          spec * _gauss(y - y_spec, p.specular_sigma[1])]
    fx = [flat, _gauss(x - p.x0, 0.3 * p.width), flat, _gauss(x - p.x0, p.specular_sigma[0])]
    streaks = _streak_factors(p, rho, dip, y, x)
    if streaks is not None:
        fy.extend(streaks[0].T)
        fx.extend(streaks[1].T)
    img = np.stack(fy, axis=1).astype(np.float32) @ np.stack(fx, axis=1).astype(np.float32).T

    spots = _spot_factors(p, rho, y, x)
    if spots is not None:
        sy, amps, sx, grid = spots
        img += (sy.astype(np.float32) @ amps) @ sx.astype(np.float32).T
        chevron = p.chevron * _smoothstep(0.6, 1.0, rho)
        if chevron > 0:
            _add_chevrons(img, p, chevron, grid)
    kikuchi = 1.0 - _smoothstep(0.0, 0.45, rho)
    if kikuchi > 0:
        _add_kikuchi(img, p, kikuchi, y, x)
    if p.ring_amp > 0 or p.halo_amp > 0:
        _add_rings(img, p, y, x)

    lr = 1.0 + p.lr_asym * np.tanh(4.0 * (x - p.x0) / p.width)
    shadow = 1.0 / (1.0 + np.exp(np.minimum((y - p.y_shadow) / p.shadow_width, 60.0)))
    vignette_x = 1.0 / (1.0 + ((x - p.width / 2) / (0.62 * p.width)) ** 6)
    vignette_y = 1.0 / (1.0 + ((y - p.height / 2) / (0.75 * p.height)) ** 6)
    img *= (shadow * vignette_y)[:, None] * (lr * vignette_x)[None, :]
    img += p.dark_level
    img *= _beam(p, t)
    if abs(p.rotation) > 1e-3:
        img = _rotate(img, p.rotation, (p.y_shadow, p.x0))
    return np.maximum(img, 0.0).astype(np.float32)


def _rotate(img: np.ndarray, degrees: float, center: tuple) -> np.ndarray:
    a = math.radians(degrees)
    matrix = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    c = np.asarray(center)
    return affine_transform(img, matrix, offset=c - matrix @ c, order=1, mode="nearest")


def render_frame(params: RheedParams, progress: float, rng: np.random.Generator, t: float = 0.0) -> np.ndarray:
    """One camera frame (float32, [0, 1] of full scale): pattern, phosphor blur, shot and read noise."""
    img = gaussian_filter(render_clean(params, progress, t), params.blur)
    img = rng.poisson(img.astype(np.float64) * params.photons).astype(np.float32) / np.float32(params.photons)
    img += params.black_level + params.read_noise * rng.standard_normal(img.shape, dtype=np.float32)
    return np.clip(img, 0.0, 1.0)


def quantize(frame: np.ndarray, bits: int = 8) -> np.ndarray:
    """A [0, 1] frame as camera counts: uint8 for 8 bits, else `bits`-bit data in a uint16 container
    (12-bit cameras write TIFF this way)."""
    dtype = np.uint8 if bits <= 8 else np.uint16
    return np.round(frame * (2 ** bits - 1)).astype(dtype)


def island_progress(n_frames: int, transition_frame: int, start: float = 0.18, end: float = 0.95) -> np.ndarray:
    """Roughness of each frame of an island run: rises from `start` to `end`, crossing
    ROUGH_THRESHOLD exactly between frames transition_frame - 1 and transition_frame."""
    i = np.arange(n_frames, dtype=np.float64)
    n_s, n_r = transition_frame, n_frames - transition_frame
    below = start + (ROUGH_THRESHOLD - start) * (i + 0.5) / max(n_s, 1)
    above = ROUGH_THRESHOLD + (end - ROUGH_THRESHOLD) * (i - n_s + 0.5) / max(n_r, 1)
    return np.where(i < n_s, below, above)


def layer_progress(p: RheedParams, n_frames: int) -> np.ndarray:
    """Roughness of each frame of a 2D layer run: low, oscillating with the monolayer period."""
    t = np.arange(n_frames, dtype=np.float64)
    return p.base_rough + 0.04 * 0.5 * (1.0 - np.cos(2 * np.pi * t / p.ml_period + p.osc_phase))


def _run_rng(seed: int, run_index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(run_index)])


def _island_ends(rng: np.random.Generator) -> tuple:
    return rng.uniform(0.12, 0.25), rng.uniform(0.85, 1.0)


def make_growth_run(n_frames: int, transition_frame: int, size: tuple = (_REF_WIDTH, _REF_HEIGHT),
                    seed: int = 0) -> list:
    """One island growth run as uint8 (height, width) frames; frames [transition_frame:] are rough."""
    if not 0 <= transition_frame <= n_frames:
        raise ValueError(f"transition_frame {transition_frame} outside 0..{n_frames}")
    width, height = size
    rng = _run_rng(seed, 0)
    p = dataclasses.replace(random_params(rng, width, height, run_frames=n_frames), look_shift=0.0)
    progress = island_progress(n_frames, transition_frame, *_island_ends(rng))
    return [quantize(render_frame(p, rho, rng, t=i)) for i, rho in enumerate(progress)]


def _split_count(total: int, parts: int) -> list:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def plan_runs(scale: float = 0.1, sequences: int | None = None, variety: bool = False) -> list:
    """Growth runs whose class sizes follow the real data set times `scale`.

    `sequences` is the number of layer runs and of island runs (default 4 each, fewer when a
    class has too few frames). Layer runs get sequence ids 1..L, island runs L+1..L+I; every
    island run has at least one smooth and one rough frame. `variety` adds runs of the extra kinds
    (rheed.synthetic_variety.extra_runs each, half a layer run long) after those.
    """
    if not scale > 0:
        raise UserError(f"--scale must be > 0, got {scale}")
    if sequences is not None and sequences < 1:
        raise UserError(f"--sequences must be >= 1, got {sequences}")
    n = {c: max(1, int(round(REAL_COUNTS[c] * scale))) for c in CLASS_NAMES}
    want = DEFAULT_SEQUENCES if sequences is None else sequences
    n_layer_runs = min(want, n["layer_smooth"])
    n_island_runs = min(want, n["island_smooth"], n["island_rough"])
    plans = []
    for i, count in enumerate(_split_count(n["layer_smooth"], n_layer_runs)):
        plans.append(RunPlan("layer", i + 1, count, 0))
    smooth = _split_count(n["island_smooth"], n_island_runs)
    rough = _split_count(n["island_rough"], n_island_runs)
    for i, (n_s, n_r) in enumerate(zip(smooth, rough)):
        plans.append(RunPlan("island", n_layer_runs + i + 1, n_s, n_r))
    if variety:
        from rheed.synthetic_variety import KIND_CLASS, extra_runs
        length = max(1, n["layer_smooth"] // (2 * n_layer_runs))
        for kind in KIND_CLASS:
            for _ in range(extra_runs(want)):
                plans.append(RunPlan(kind, len(plans) + 1, 0, 0, length))
    return plans


def _all_classes() -> tuple:
    from rheed.synthetic_variety import VARIETY_CLASSES
    return CLASS_NAMES + VARIETY_CLASSES


def _prepare_output(out: Path, overwrite: bool, classes: tuple) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise UserError(f"output folder {out} is not empty; choose another --out or pass --overwrite")
        # remove only files this generator wrote before, so frames of an older run do not mix in
        for name in _all_classes():
            folder = out / name
            if folder.is_dir():
                for f in folder.iterdir():
                    if f.is_file() and FILE_RE.match(f.name):
                        f.unlink()
    for name in classes:
        (out / name).mkdir(parents=True, exist_ok=True)


def _write_frame(path: Path, frame: np.ndarray, tiff16: bool, cam=None) -> None:
    if tiff16:
        import tifffile
        tifffile.imwrite(path, quantize(frame, bits=12), photometric="minisblack")
    elif cam is not None:
        from rheed.camera import save_8bit
        save_8bit(path, quantize(frame), cam)
    else:
        Image.fromarray(quantize(frame)).save(path, compress_level=PNG_COMPRESS_LEVEL)


@dataclass(frozen=True)
class _RunJob:
    out: Path
    plan: RunPlan
    run_index: int
    seed: int
    size: tuple
    tiff16: bool
    camera_randomize: bool
    variety: bool


def _frame_class(plan: RunPlan, frame_index: int) -> str:
    from rheed.synthetic_variety import KIND_CLASS
    if plan.kind in KIND_CLASS:
        return KIND_CLASS[plan.kind]
    if plan.kind == "layer":
        return "layer_smooth"
    return "island_smooth" if frame_index < plan.n_smooth else "island_rough"


def _write_run(job: _RunJob) -> list:
    """Renders and writes one run; returns its manifest rows. Everything random comes from the run's
    own streams, so runs can be written in any order or process."""
    from rheed import synthetic_variety as V
    plan = job.plan
    rng = _run_rng(job.seed, job.run_index)
    cam = None
    if job.camera_randomize:  # its own random stream: the patterns stay those of the same seed without it
        from rheed.camera import random_camera
        cam = random_camera(np.random.default_rng([job.seed, job.run_index, 7]))
    run_width, run_height = cam.size if cam is not None else job.size
    p = random_params(rng, run_width, run_height, run_frames=plan.n_frames)
    if job.variety:
        p = V.widen(p, rng)
    if plan.kind in V.KIND_CLASS:
        p = V.kind_params(plan.kind, p, rng)
        progress = V.kind_progress(plan.kind, p, plan.n_frames, rng)
    elif plan.kind == "layer":
        progress = layer_progress(p, plan.n_frames)
    else:
        progress = island_progress(plan.n_frames, plan.n_smooth, *_island_ends(rng))
    ext = ".tif" if job.tiff16 else ".png"
    rows = []
    for frame_index, rho in enumerate(progress):
        cls = _frame_class(plan, frame_index)
        name = f"seq{plan.sequence:03d}_{frame_index:06d}{ext}"
        frame = render_frame(p, rho, rng, t=frame_index)
        if cam is not None:
            from rheed.camera import apply_camera
            frame = apply_camera(frame, cam)
        _write_frame(job.out / cls / name, frame, job.tiff16, cam)
        rows.append((f"{cls}/{name}", cls, f"seq{plan.sequence:03d}", frame_index, f"{rho:.4f}"))
    return rows


def generate_dataset(out, scale: float = 0.1, sequences: int | None = None, seed: int = 0,
                     tiff16: bool = False, width: int = _REF_WIDTH, height: int = _REF_HEIGHT,
                     overwrite: bool = False, progress_callback=None, camera_randomize: bool = False,
                     variety: bool = False, workers: int = 1) -> dict:
    """Writes the synthetic data set; returns {'counts': {class: n}, 'sequences': n, 'files': n}.
    `camera_randomize`: every run gets its own camera and screen (rheed.camera; frame size included).
    `variety`: wide geometry ranges and the extra pattern kinds of rheed.synthetic_variety.
    `workers` > 1 writes runs in that many processes; the files are the same as with one."""
    if width < 32 or height < 32:
        raise UserError(f"--width and --height must be >= 32, got {width}x{height}")
    if workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}")
    plans = plan_runs(scale, sequences, variety)
    classes = _all_classes() if variety else CLASS_NAMES
    out = Path(out)
    _prepare_output(out, overwrite, classes)
    jobs = [_RunJob(out, plan, i, seed, (width, height), tiff16, camera_randomize, variety)
            for i, plan in enumerate(plans)]
    rows = []
    if workers == 1:
        results = map(_write_run, jobs)
    else:
        from concurrent.futures import ProcessPoolExecutor
        pool = ProcessPoolExecutor(max_workers=workers)
        results = pool.map(_write_run, jobs)
    try:
        for done, run_rows in enumerate(results, 1):
            rows.extend(run_rows)
            if progress_callback is not None:
                progress_callback(done, len(plans))
    finally:
        if workers > 1:
            pool.shutdown(cancel_futures=True)
    with open(out / "synthetic_frames.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "fine_class", "sequence", "frame", "progress"])
        writer.writerows(rows)
    counts = {c: sum(row[1] == c for row in rows) for c in classes}
    return {"counts": counts, "sequences": len(plans), "files": len(rows)}


def save_contact_sheet(data_dir, out_png, per_class: int = 4, title: str | None = None) -> Path:
    """Saves a grid of frames (one row per class, spread over the sequences) read back from disk."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data_dir = Path(data_dir)
    classes = [c for c in _all_classes() if (data_dir / c).is_dir()] or list(CLASS_NAMES)
    fig, axes = plt.subplots(len(classes), per_class, figsize=(2.6 * per_class, 2.1 * len(classes)),
                             squeeze=False)
    for row, cls in enumerate(classes):
        files = sorted(f for f in (data_dir / cls).glob("seq*_*.*") if FILE_RE.match(f.name))
        if not files:
            raise UserError(f"no generated frames in {data_dir / cls}")
        picks = [files[int(i)] for i in np.linspace(0, len(files) - 1, per_class).round()]
        for col, ax in enumerate(axes[row]):
            ax.axis("off")
            if col >= len(picks):
                continue
            frame = _read_back(picks[col])
            ax.imshow(frame[::2, ::2], cmap="gray", vmin=0, vmax=255, interpolation="antialiased")
            ax.set_title(f"{cls}  {picks[col].stem}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=72)
    plt.close(fig)
    return out_png


def _read_back(path: Path) -> np.ndarray:
    if path.suffix == ".tif":
        import tifffile
        return tifffile.imread(path).astype(np.float32) * (255.0 / 4095.0)
    return np.asarray(Image.open(path))
