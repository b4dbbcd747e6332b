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

How bright the spots are next to the streaks differs from run to run, so the roughness at which the
3D part of the pattern (transmission spots and the streaks' dotted part) takes over differs too (0.31 to
0.66 over 96 quick-start runs). Island runs are anchored (`anchor_transition`): the rendered roughness
is the progress bent so that the 3D part carries half the pattern's intensity exactly at
`ROUGH_THRESHOLD`, and the label follows what the frame shows. Each run also has a small `look_shift`:
its pattern looks a little rougher or smoother than its label says, as when a person picks the
transition frame by eye (zero in `make_growth_run`).

Every frame has a dark shadow edge at the bottom, a beam brightness that drifts along the run,
a small camera rotation, phosphor blur (Gaussian), shot noise (Poisson below 10 photons per pixel, its
skew-corrected normal approximation up to 30, the plain normal one, drawn together with the read noise,
above) and read noise. The pattern
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
``anchor_transition(params) -> RheedParams``
    The same run with `rough_at` set where `spot_share` crosses one half.
``make_growth_run(n_frames, transition_frame, size=(656, 492), seed=0) -> list[np.ndarray]``
    One island growth run as uint8 frames; frames before `transition_frame` are smooth
    (progress < ROUGH_THRESHOLD), frames from it on are rough.

Writing whole data sets (run plans, folders, the manifest, contact sheets) is rheed.synthetic_dataset.
"""
import dataclasses
import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter, gaussian_filter1d
from scipy.sparse import csr_matrix
from scipy.special import ndtri

CLASS_NAMES = ("layer_smooth", "island_smooth", "island_rough")
ROUGH_THRESHOLD = 0.5
# island frames near ROUGH_THRESHOLD, written apart when asked (streaks and spots mixed; no binary label)
TRANSITION_CLASS = "island_transition"

REF_WIDTH, REF_HEIGHT = 656, 492


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
    # rendered roughness at progress ROUGH_THRESHOLD (progress is bent piecewise linearly to it);
    # anchor_transition sets it where the 3D part carries half the pattern
    rough_at: float = ROUGH_THRESHOLD


def _smoothstep(a: float, b: float, x: float) -> float:
    u = min(max((x - a) / (b - a), 0.0), 1.0)
    return u * u * (3.0 - 2.0 * u)


def random_params(rng: np.random.Generator, width: int = REF_WIDTH, height: int = REF_HEIGHT,
                  run_frames: int = 100) -> RheedParams:
    """Draws the settings of one growth run."""
    s = min(width / REF_WIDTH, height / REF_HEIGHT)
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


def _streak_factors(p: RheedParams, rho: float, dip: float, y: np.ndarray, x: np.ndarray,
                    rods_only: bool = False):
    """Separable streak profiles: returns (H, K) vertical and (W, K) horizontal factors; with
    `rods_only`, only the continuous part of modulated streaks (without their dots at the Bragg rows)."""
    weight = p.streak_amp * (1.0 - _smoothstep(0.3, 0.85, rho)) * (1.0 - 0.4 * dip)
    if weight <= 1e-4:
        return None
    sigma = p.streak_sigma * (1.0 + 1.2 * rho)
    length = p.streak_length * (1.0 - 0.6 * rho)
    modulation = min(_smoothstep(0.1, 0.65, rho), 0.9)
    bumps = {shift: _row_bumps(p, y, shift) for shift in (0.0, 0.5)} if modulation > 0 and not rods_only else {}
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
                dots = 0.0 if rods_only else bumps[0.5 if odd else 0.0]
                profile = profile * ((1.0 - modulation) + modulation * dots)
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


def _add_chevrons(img: np.ndarray, p: RheedParams, strength: float, spots, blur: float = 0.0) -> None:
    """Adds V-shaped arms opening upwards from every visible transmission spot (seen through a Gaussian
    blur of sigma `blur`)."""
    yc, xc, amps = spots
    arm = 0.45 * p.spacing
    half = int(math.ceil(arm)) + 2 + int(math.ceil(4.0 * blur))
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
    if blur > 0:
        kernel = gaussian_filter(kernel, blur, mode="constant")
    h, w = img.shape
    for i, j in zip(*np.nonzero(amps > 0.02 * amps.max())):
        r, c = int(round(yc[i])), int(round(xc[j]))
        r0, r1, c0, c1 = r - half, r + half + 1, c - half, c + half + 1
        if r1 <= 0 or c1 <= 0 or r0 >= h or c0 >= w:
            continue
        kr0, kc0 = max(0, -r0), max(0, -c0)
        kr1, kc1 = kernel.shape[0] - max(0, r1 - h), kernel.shape[1] - max(0, c1 - w)
        img[max(r0, 0):min(r1, h), max(c0, 0):min(c1, w)] += amps[i, j] * kernel[kr0:kr1, kc0:kc1]


def _add_kikuchi(img: np.ndarray, p: RheedParams, weight: float, y: np.ndarray, x: np.ndarray,
                 blur: float = 0.0) -> None:
    """Thin bright lines with a dark companion, mirrored about the specular column. Each line is
    steeper than 30 degrees, so every row only touches a short run of columns around it; beyond
    6 line widths the profile is below 1e-7 of its peak and is left out. A Gaussian blur of sigma
    `blur` across a straight line of Gaussian profile widens it to sqrt(width**2 + blur**2) and scales
    the even part by r = width / new width and the odd (dark-side) part by r**2."""
    y_spec = p.y_shadow - p.laue_radius
    height, width = img.shape
    for angle, offset, amp, sharp_width in p.kikuchi:
        line_width = math.hypot(sharp_width, blur)
        r = sharp_width / line_width
        for side in (-1.0, 1.0):
            # line through (x0 + side * offset, y_spec), tilted by `angle` from the horizontal
            nx, ny = math.sin(angle), side * math.cos(angle)
            reach = int(math.ceil(6.0 * line_width / nx)) + 1
            centre = np.rint(p.x0 + side * offset - (y - y_spec) * ny / nx).astype(np.int64)
            cols = centre[:, None] + np.arange(-reach, reach + 1)
            rows = np.broadcast_to(np.arange(height)[:, None], cols.shape)
            inside = (cols >= 0) & (cols < width)
            rows, cols = rows[inside], cols[inside]
            u = ((x[cols] - (p.x0 + side * offset)) * nx + (y[rows] - y_spec) * ny) / line_width
            # bright excess line with a darker deficiency side (one exponential for speed)
            img[rows, cols] += weight * amp * r * np.exp(-0.5 * u * u) * (1.0 - 0.6 * r * side * u)


def _add_rings(img: np.ndarray, p: RheedParams, y: np.ndarray, x: np.ndarray, blur: float = 0.0) -> None:
    """Rings centred on the transmitted beam (at the shadow edge below the specular column): sharp
    Debye-Scherrer rings of a polycrystalline film (arcs when textured) and the broad halo of an
    amorphous one; the shadow edge hides their lower half."""
    dy, dx = y[:, None] - p.y_shadow, x[None, :] - p.x0
    r = np.sqrt(dx * dx + dy * dy)
    # a blur much narrower than the radius widens a ring's (or the halo's) radial profile like a line's
    ring_sigma, halo_sigma = math.hypot(p.ring_sigma, blur), math.hypot(p.halo_sigma, blur)
    if p.ring_amp > 0:
        amp = p.ring_amp * p.ring_sigma / ring_sigma
        rings = sum(amp * (0.85 ** i) * _gauss(r - radius, ring_sigma) for i, radius in enumerate(p.ring_radii))
        if p.ring_texture > 0:   # fibre texture: intensity gathered around the vertical
            cos_angle = np.abs(dy) / np.maximum(r, 1.0)
            rings *= (1.0 - p.ring_texture) + p.ring_texture * cos_angle ** 4
        img += rings
    if p.halo_amp > 0:
        img += p.halo_amp * p.halo_sigma / halo_sigma * _gauss(r - p.halo_radius, halo_sigma)


def render_clean(p: RheedParams, progress: float, t: float = 0.0, blur: float = 0.0) -> np.ndarray:
    """Noise-free pattern (float32, camera full-scale units) at roughness `progress` (shifted by
    `p.look_shift`) and time `t` in frames, unblurred or as seen through a Gaussian blur of sigma `blur`.

    The blur is not run over the finished image. The separable terms, masks (shadow edge, vignetting)
    included, are blurred in their 1-D factors, which is exact; the other terms get their blurred
    shapes (line and ring widths, a blurred chevron kernel) and a shadow edge widened by the blur. The
    rotation comes afterwards, which an isotropic blur does not notice."""
    rho = rendered_roughness(p, progress + p.look_shift)
    y = np.arange(p.height, dtype=np.float32)
    x = np.arange(p.width, dtype=np.float32)
    dip = _oscillation(p, t, rho)
    y_spec = p.y_shadow - p.laue_radius

    lr = 1.0 + p.lr_asym * np.tanh(4.0 * (x - p.x0) / p.width)
    vignette_y = 1.0 / (1.0 + ((y - p.height / 2) / (0.75 * p.height)) ** 6)
    mask_x = (lr / (1.0 + ((x - p.width / 2) / (0.62 * p.width)) ** 6)).astype(np.float32)
    mask_y = (_shadow(p, y, 0.0) * vignette_y).astype(np.float32)

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
    img = _blurred(np.stack(fy, axis=1), mask_y, blur) @ _blurred(np.stack(fx, axis=1), mask_x, blur).T

    spots = _spot_factors(p, rho, y, x)
    if spots is not None:
        sy, amps, sx, grid = spots
        img += (_blurred(sy, mask_y, blur) @ amps) @ _blurred(sx, mask_x, blur).T

    # the rest is not separable: drawn blurred, then masked
    chevron = p.chevron * _smoothstep(0.6, 1.0, rho) if spots is not None else 0.0
    kikuchi = 1.0 - _smoothstep(0.0, 0.45, rho)
    if chevron > 0 or kikuchi > 0 or p.ring_amp > 0 or p.halo_amp > 0:
        rest = np.zeros_like(img)
        if chevron > 0:
            _add_chevrons(rest, p, chevron, spots[3], blur)
        if kikuchi > 0:
            _add_kikuchi(rest, p, kikuchi, y, x, blur)
        if p.ring_amp > 0 or p.halo_amp > 0:
            _add_rings(rest, p, y, x, blur)
        rest *= (_shadow(p, y, blur) * vignette_y).astype(np.float32)[:, None]
        rest *= mask_x[None, :]
        img += rest
    img += p.dark_level
    img *= _beam(p, t)
    if abs(p.rotation) > 1e-3:
        img = _rotate(img, p.rotation, (p.y_shadow, p.x0))
    return np.maximum(img, np.float32(0.0))


def rendered_roughness(p: RheedParams, progress: float) -> float:
    """The roughness drawn for `progress`: 0 -> 0, ROUGH_THRESHOLD -> p.rough_at, 1 -> 1, linear between."""
    return float(np.interp(progress, (0.0, ROUGH_THRESHOLD, 1.0), (0.0, p.rough_at, 1.0)))


def spot_share(p: RheedParams, rho: float, stride: int = 4) -> float:
    """Share of the clean pattern's spot and streak intensity above the shadow edge, at rendered
    roughness `rho`, that is 3D: transmission spots plus the dots modulated streaks break into (the
    continuous rods are 2D). Computed from the 1-D factors on every `stride`-th row and column."""
    y = np.arange(0, p.height, stride, dtype=np.float32)
    x = np.arange(0, p.width, stride, dtype=np.float32)
    above = (y < p.y_shadow).astype(np.float32)
    totals = []
    for rods_only in (False, True):
        streaks = _streak_factors(p, rho, 0.0, y, x, rods_only)
        totals.append(0.0 if streaks is None else float((above @ streaks[0]) @ streaks[1].sum(axis=0)))
    spots = _spot_factors(p, rho, y, x)
    spot_total = 0.0 if spots is None else float(((above @ spots[0]) @ spots[1]) @ spots[2].sum(axis=0))
    streak_total, rod_total = totals
    return (spot_total + streak_total - rod_total) / max(spot_total + streak_total, 1e-12)


def anchor_transition(p: RheedParams, share: float = 0.5) -> RheedParams:
    """`p` with `rough_at` set to the rendered roughness where `spot_share` reaches `share` (bisection;
    the share rises with roughness), so that frames labelled rough are the ones that look it."""
    low, high = 0.0, 1.0
    for _ in range(16):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if spot_share(p, mid) < share else (low, mid)
    return dataclasses.replace(p, rough_at=0.5 * (low + high))


def _shadow(p: RheedParams, y: np.ndarray, blur: float) -> np.ndarray:
    """The sample's shadow edge: a logistic step in y, widened for a Gaussian blur of sigma `blur` (a
    logistic of scale w has variance (pi w)**2 / 3, to which the blur adds blur**2)."""
    width = math.sqrt(p.shadow_width ** 2 + 3.0 * (blur / math.pi) ** 2)
    return 1.0 / (1.0 + np.exp(np.minimum((y - p.y_shadow) / width, 60.0)))


def _blurred(factors: np.ndarray, mask: np.ndarray, blur: float) -> np.ndarray:
    """float32 columns of 1-D profiles times `mask`, each blurred along its length (the frame's edges
    reflect, as in scipy's 2-D gaussian_filter)."""
    masked = factors.astype(np.float32, copy=False) * mask[:, None]
    return gaussian_filter1d(masked, blur, axis=0) if blur > 0 else masked


def _rotate(img: np.ndarray, degrees: float, center: tuple) -> np.ndarray:
    """`img` turned by `degrees` about `center` (row, column), bilinear; the corners that come from
    outside the frame take the median of the frame's border."""
    warp, outside = _rotation_warp(img.shape, degrees, center)
    turned = (warp @ img.ravel()).reshape(img.shape)
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    turned[outside] = np.median(border)
    return turned


@functools.lru_cache(maxsize=2)   # one run at a time per process; ~50 MB each at 1388x1038
def _rotation_warp(shape: tuple, degrees: float, center: tuple) -> tuple:
    """The bilinear rotation of a frame of `shape` as a sparse matrix on the flattened frame, and the mask of
    output pixels whose source lies outside the frame. Sampled as PIL's affine transform samples (source
    point of each pixel centre, neighbours clamped at the edges), so frames match those of earlier versions,
    which called PIL, to float rounding. A run keeps its rotation: the matrix is built once per run, and a
    frame then costs one sparse product (~3x faster than PIL on a 656x492 float frame)."""
    height, width = shape
    a = math.radians(degrees)
    cos, sin = math.cos(a), math.sin(a)
    cy, cx = center
    u, v = np.arange(width) + 0.5 - cx, np.arange(height) + 0.5 - cy
    x_in = cos * u[None, :] + (sin * v + cx)[:, None]
    y_in = -sin * u[None, :] + (cos * v + cy)[:, None]
    outside = (x_in < 0) | (x_in >= width) | (y_in < 0) | (y_in >= height)
    # sample positions of pixel centres; +1 before truncating gives the floor of anything above -1
    x_in -= 0.5
    y_in -= 0.5
    x0 = (x_in + 1.0).astype(np.int32) - 1
    y0 = (y_in + 1.0).astype(np.int32) - 1
    dx, dy = (x_in - x0).astype(np.float32), (y_in - y0).astype(np.float32)
    cols = [np.clip(x0 + k, 0, width - 1) for k in (0, 1)]
    rows = [np.clip(y0 + k, 0, height - 1) * width for k in (0, 1)]
    indices = np.stack([rows[i] + cols[j] for i in (0, 1) for j in (0, 1)], axis=-1)
    weights = np.stack([(1 - dy) * (1 - dx), (1 - dy) * dx, dy * (1 - dx), dy * dx], axis=-1)
    weights[outside] = 0.0
    n = height * width
    warp = csr_matrix((weights.ravel(), indices.ravel(), np.arange(0, 4 * n + 1, 4, dtype=np.int32)), shape=(n, n))
    return warp, outside


# Photon counts by brightness: below POISSON_BELOW expected photons a Poisson draw; up to
# NORMAL_SHOT_NOISE_FROM the normal law with the Cornish-Fisher skew term (Poisson mean, variance and
# skew, rounded to whole photons: numpy's Poisson sampler is slowest in this range); above it the plain
# normal law (skew under 0.2), which then also carries the read noise in one draw.
POISSON_BELOW = 10.0
NORMAL_SHOT_NOISE_FROM = 30.0

# Standard normal quantiles at the centres of 2**16 equal-probability bins: indexing them with uniform
# 16-bit integers gives normal deviates about four times faster than Generator.standard_normal. The
# tails stop at 4.3 sigma (probability 1.5e-5), far past anything an 8- or 12-bit frame resolves.
_NORMAL_TABLE = ndtri((np.arange(2 ** 16) + 0.5) / 2 ** 16).astype(np.float32)


def normal_deviates(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    """float32 standard normal deviates of `shape` (table lookup, see _NORMAL_TABLE)."""
    n = int(np.prod(shape))
    index = np.frombuffer(rng.bytes(2 * n), dtype=np.uint16)
    return np.take(_NORMAL_TABLE, index).reshape(shape)


def sensor_noise(expected: np.ndarray, read_sd: float, rng: np.random.Generator) -> np.ndarray:
    """Recorded signal (float32, photon units) for `expected` photons per pixel: shot noise plus
    Gaussian read noise of `read_sd` photons. Dim pixels get a whole photon count plus read noise
    (see POISSON_BELOW), the others one normal draw with variance expected + read_sd**2 (read noise
    can go below zero; the black level is added later)."""
    z = normal_deviates(rng, expected.shape)
    dim = expected < NORMAL_SHOT_NOISE_FROM
    lam, zd = expected[dim], z[dim]
    sd = expected + np.float32(read_sd ** 2)
    np.sqrt(sd, out=sd)
    z *= sd
    z += expected
    if lam.size:
        counts = np.rint(lam + np.sqrt(lam) * zd + (zd * zd - 1.0) / 6.0)
        darkest = lam < POISSON_BELOW
        counts[darkest] = rng.poisson(lam[darkest])
        z[dim] = np.maximum(counts, 0.0) + normal_deviates(rng, lam.shape) * np.float32(read_sd)
    return z


def render_frame(params: RheedParams, progress: float, rng: np.random.Generator, t: float = 0.0) -> np.ndarray:
    """One camera frame (float32, [0, 1] of full scale): pattern, phosphor blur, shot and read noise."""
    img = render_clean(params, progress, t, blur=params.blur)
    img *= np.float32(params.photons)
    img = sensor_noise(img, params.read_noise * params.photons, rng)
    img *= np.float32(1.0 / params.photons)
    img += np.float32(params.black_level)
    return np.clip(img, 0.0, 1.0, out=img)


def quantize(frame: np.ndarray, bits: int = 8) -> np.ndarray:
    """A [0, 1] frame as camera counts: uint8 for 8 bits, else `bits`-bit data in a uint16 container
    (12-bit cameras write TIFF this way)."""
    dtype = np.uint8 if bits <= 8 else np.uint16
    return np.round(frame * (2 ** bits - 1)).astype(dtype)


def island_progress(n_frames: int, transition_frame: int, start: float = 0.18, end: float = 0.95,
                    band: float = 0.0, n_band: int = 0) -> np.ndarray:
    """Roughness of each frame of an island run: rises from `start` to `end`, crossing
    ROUGH_THRESHOLD exactly between frames transition_frame - 1 and transition_frame. With `n_band` > 0
    the frames [transition_frame, transition_frame + n_band) cover ROUGH_THRESHOLD +- `band`, the
    smooth frames stay below it and the rough ones above it."""
    i = np.arange(n_frames, dtype=np.float64)
    n_s, n_r = transition_frame, n_frames - transition_frame - n_band
    low, high = ROUGH_THRESHOLD - band, ROUGH_THRESHOLD + band
    below = start + (low - start) * (i + 0.5) / max(n_s, 1)
    within = low + (high - low) * (i - n_s + 0.5) / max(n_band, 1)
    above = high + (end - high) * (i - n_s - n_band + 0.5) / max(n_r, 1)
    return np.where(i < n_s, below, np.where(i < n_s + n_band, within, above))


def band_frames(band: float, n_labelled: int, start: float, end: float) -> int:
    """How many frames an island run spends within ROUGH_THRESHOLD +- `band` at its average rate of
    roughening (`n_labelled` smooth and rough frames from `start` to `end`); at least one if band > 0."""
    if band <= 0:
        return 0
    return max(1, int(round(2.0 * band * n_labelled / (end - start))))


def layer_progress(p: RheedParams, n_frames: int) -> np.ndarray:
    """Roughness of each frame of a 2D layer run: low, oscillating with the monolayer period."""
    t = np.arange(n_frames, dtype=np.float64)
    return p.base_rough + 0.04 * 0.5 * (1.0 - np.cos(2 * np.pi * t / p.ml_period + p.osc_phase))


def run_rng(seed: int, run_index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(run_index)])


def island_ends(rng: np.random.Generator) -> tuple:
    return rng.uniform(0.12, 0.25), rng.uniform(0.85, 1.0)


def make_growth_run(n_frames: int, transition_frame: int, size: tuple = (REF_WIDTH, REF_HEIGHT),
                    seed: int = 0) -> list:
    """One island growth run as uint8 (height, width) frames; frames [transition_frame:] are rough."""
    if not 0 <= transition_frame <= n_frames:
        raise ValueError(f"transition_frame {transition_frame} outside 0..{n_frames}")
    width, height = size
    rng = run_rng(seed, 0)
    p = anchor_transition(dataclasses.replace(random_params(rng, width, height, run_frames=n_frames), look_shift=0.0))
    progress = island_progress(n_frames, transition_frame, *island_ends(rng))
    return [quantize(render_frame(p, rho, rng, t=i)) for i, rho in enumerate(progress)]
