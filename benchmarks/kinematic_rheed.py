"""Kinematic RHEED frames: an independent test set, computed from the scattering geometry.

rheed.synthetic draws patterns by rule (streaks, spot grids, arcs placed on the screen). This script
does not use its pattern code: every pixel is a scattering direction, its momentum transfer q = k_out - k_in is
computed from the beam energy, the grazing angle and the camera geometry, and the intensity is the
kinematic structure factor of the surface there:

- flat surface (smooth): reciprocal-lattice rods of the surface cell (with a reconstruction), broadened
  by the mean terrace size (a Lorentzian per in-plane direction). Where the rods cross the Ewald sphere
  they give streaks; on very flat, well-ordered surfaces (terraces of thousands of angstrom) only dots on
  the zeroth Laue circle remain. Two-level step disorder moves weight from the sharp rod to a diffuse one
  with the phase q_z * step height, so streaks are modulated along their length.
- 3D islands (rough): transmission through crystallites, i.e. Gaussian spots at the bulk reciprocal
  lattice points (fcc, bcc or simple rule) whose width is set by the island size; faceted islands add
  facet rods through each spot (chevrons); a polycrystalline film gives Debye-Scherrer rings around the
  transmitted beam.
A growth run shares its material, beam and camera; the island coverage sets the mix of the two.
The islands shadow the flat surface at grazing incidence, so the reflected part
falls as (1 - coverage)^2. Coverage below 0.1 is a smooth frame, above 0.6 a rough one,
and a frame is written only when its pattern agrees: at least 80 % of its lit pixels above the horizon lit
mainly by transmission for rough, at most a fifth for smooth (a frame in between would be a matter of taste).

Camera: phosphor blur, Poisson and read noise, gain (bright runs saturate), gamma, a circular screen
with vignetting or the full frame, either mounting (flips), a small rotation, 8- or 12-bit PNG, and
common sensor sizes. Output: <out>/<fine_class>/seqNNN_FFFFFF.png (fine classes of
rheed/split_layout.py), so `scripts/split_dataset_simple.py --by_sequence` splits it, plus <out>/frames.csv.

    python benchmarks/kinematic_rheed.py --out kinematic_rheed --runs 24 --frames 8 --seed 0
"""
import argparse
import csv
import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from rheed.synthetic import quantize  # noqa: E402  (only the camera-count rounding; no pattern code)
from rheed.synthetic_dataset import PNG_OPTIONS  # noqa: E402

SIZES = ((640, 480), (656, 492), (800, 600), (1024, 768))
KINDS = ('layer', 'laue', 'islands', 'transition', 'rings')
KIND_WEIGHTS = (0.3, 0.15, 0.2, 0.25, 0.1)
# The label follows what the pattern shows: rough frames need most of their intensity from transmission,
# smooth frames little; frames in between are not written.
LABEL_SHARE = {'rough': 0.8, 'smooth': 0.2}


def wavevector(energy_kev: float) -> float:
    """Relativistic electron wavevector 2 pi / lambda in 1/angstrom."""
    e = energy_kev * 1e3
    wavelength = 12.2643 / math.sqrt(e * (1.0 + 0.97848e-6 * e))
    return 2.0 * math.pi / wavelength


def allowed(rule: str, h: int, k: int, l: int) -> bool:
    if rule == 'fcc':
        return h % 2 == k % 2 == l % 2
    if rule == 'bcc':
        return (h + k + l) % 2 == 0
    return True


def draw_run(rng: np.random.Generator, kind: str) -> dict:
    """Material, beam and camera of one growth run."""
    width, height = SIZES[rng.integers(len(SIZES))]
    fov = rng.uniform(0.06, 0.12)                       # half-width of the screen as a scattering angle (rad)
    return dict(
        kind=kind, width=width, height=height,
        k=wavevector(rng.uniform(10.0, 30.0)),
        theta=math.radians(rng.uniform(1.0, 3.0)),       # grazing incidence
        rad_per_px=fov / (width / 2), x0=width * rng.uniform(0.42, 0.58), y_horizon=height * rng.uniform(0.62, 0.85),
        rotation=math.radians(rng.uniform(-3.0, 3.0)),
        a_perp=rng.uniform(2.8, 6.0), a_par=rng.uniform(2.8, 6.0), c=rng.uniform(2.8, 6.0),
        recon_perp=int(rng.choice([1, 2, 3, 4])), recon_par=int(rng.choice([1, 2, 4])),
        frac_weight=rng.uniform(0.15, 0.6), step=rng.uniform(1.4, 3.2), specular=rng.uniform(1.5, 5.0),
        terrace=(rng.uniform(1500, 6000) if kind == 'laue' else math.exp(rng.uniform(math.log(60), math.log(600)))),
        disorder=(rng.uniform(0.0, 0.1) if kind == 'laue' else rng.uniform(0.0, 0.5)),
        diffuse_len=rng.uniform(15.0, 40.0), dw=rng.uniform(4.0, 9.0),
        rule=str(rng.choice(['fcc', 'bcc', 'simple'])), island=rng.uniform(30.0, 150.0),
        facet=(math.radians(rng.uniform(15.0, 35.0)) if rng.random() < 0.35 else 0.0),
        transmission_gain=rng.uniform(1.0, 3.0), a_cubic=rng.uniform(3.5, 6.5), ring_weights=rng.uniform(0.05, 1.0, 30) ** 2,
        ring_texture=(rng.uniform(0.5, 4.0) if rng.random() < 0.5 else 0.0),
        background=rng.uniform(0.01, 0.08), direct_beam=rng.random() < 0.4,
        blur=rng.uniform(0.8, 3.0), photons=math.exp(rng.uniform(math.log(40), math.log(2000))),
        read_noise=rng.uniform(0.002, 0.02), gain=rng.uniform(0.6, 1.6), gamma=rng.uniform(0.7, 1.4),
        screen=(rng.uniform(0.45, 0.62) if rng.random() < 0.5 else 0.0), vignetting=rng.uniform(0.0, 0.5),
        flip_v=rng.random() < 0.3, flip_h=rng.random() < 0.5, bits=int(rng.choice([8, 12])),
    )


def scattering_vectors(p: dict):
    """Per-pixel exit angles (alpha above the surface, phi sideways) and q = k_out - k_in in 1/angstrom."""
    y, x = np.mgrid[0:p['height'], 0:p['width']].astype(np.float64)
    u, v = x - p['x0'], p['y_horizon'] - y
    c, s = math.cos(p['rotation']), math.sin(p['rotation'])
    phi, alpha = (c * u - s * v) * p['rad_per_px'], (s * u + c * v) * p['rad_per_px']
    k, theta = p['k'], p['theta']
    qx = k * (np.cos(alpha) * np.cos(phi) - math.cos(theta))
    qy = k * np.cos(alpha) * np.sin(phi)
    qz = k * (np.sin(alpha) + math.sin(theta))
    return alpha, phi, qx, qy, qz


def lorentz(delta, length):
    return 1.0 / (1.0 + (delta * length) ** 2)


def surface_intensity(p: dict, qx, qy, qz, disorder: float) -> np.ndarray:
    """Rods of the reconstructed surface cell; sharp part from the terraces, diffuse part from the steps."""
    coherent = 1.0 - 2.0 * disorder * (1.0 - disorder) * (1.0 - np.cos(qz * p['step']))
    falloff = np.exp(-(qz / p['dw']) ** 2)
    out = np.zeros_like(qx)
    gy_step, gx_step = 2 * math.pi / (p['a_perp'] * p['recon_perp']), 2 * math.pi / (p['a_par'] * p['recon_par'])
    n_y = int(np.abs(qy).max() / gy_step) + 2
    for h in range(-2 * p['recon_par'], 1):          # rods behind the zeroth zone reach the screen (qx <= 0)
        gx = h * gx_step
        if np.abs(qx - gx).min() * p['diffuse_len'] > 30:
            continue
        sharp_x, diffuse_x = lorentz(qx - gx, p['terrace']), lorentz(qx - gx, p['diffuse_len'])
        for j in range(-n_y, n_y + 1):
            weight = 1.0 if (j % p['recon_perp'] == 0 and h % p['recon_par'] == 0) else p['frac_weight']
            if h == 0 and j == 0:
                weight *= p['specular']
            dy = qy - j * gy_step
            out += weight * (coherent * sharp_x * lorentz(dy, p['terrace'])
                             + 0.3 * (1.0 - coherent) * diffuse_x * lorentz(dy, p['diffuse_len']))
    return out * falloff


def island_intensity(p: dict, qx, qy, qz) -> np.ndarray:
    """Transmission spots of the bulk lattice (plus facet rods), each drawn in its own window."""
    out = np.zeros_like(qx)
    sigma = 2.5 / p['island']                         # spot width in q from the island size
    g = 2 * math.pi / np.array([p['a_par'], p['a_perp'], p['c']])
    hs = range(-1, 2)
    ks = range(-int(np.abs(qy).max() / g[1]) - 1, int(np.abs(qy).max() / g[1]) + 2)
    ls = range(0, int(qz.max() / g[2]) + 2)
    reach = 4 * sigma * (4.0 if p['facet'] else 1.0)
    for h in hs:
        for kk in ks:
            for l in ls:
                if not allowed(p['rule'], h, kk, l):
                    continue
                gx, gy, gz = h * g[0], kk * g[1], l * g[2]
                near = (np.abs(qy - gy) < reach) & (np.abs(qz - gz) < reach) & (np.abs(qx - gx) < 4 * sigma)
                if not near.any():
                    continue
                rows, cols = np.nonzero(near.any(axis=1))[0], np.nonzero(near.any(axis=0))[0]
                win = np.s_[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
                dx, dy, dz = qx[win] - gx, qy[win] - gy, qz[win] - gz
                spot = np.exp(-(dx ** 2 + dy ** 2 + dz ** 2) / (2 * sigma ** 2))
                if p['facet']:
                    for sign in (-1.0, 1.0):              # a rod along each facet normal, tilted in the y-z plane
                        along = sign * math.sin(p['facet']) * dy + math.cos(p['facet']) * dz
                        across = math.cos(p['facet']) * dy - sign * math.sin(p['facet']) * dz
                        spot += 0.6 * np.exp(-(across ** 2 + dx ** 2) / (2 * (0.5 * sigma) ** 2)
                                             - along ** 2 / (2 * (4 * sigma) ** 2))
                out[win] += spot * math.exp(-(gx * gx + gy * gy + gz * gz) / (2 * p['dw'] ** 2))
    return out


def ring_intensity(p: dict, qx, qy, qz) -> np.ndarray:
    """Debye-Scherrer rings of randomly oriented cubic grains around the transmitted beam (q = 0):
    one ring per allowed h^2 + k^2 + l^2, arcs when the grains share a fibre texture."""
    q = np.sqrt(qx ** 2 + qy ** 2 + qz ** 2)
    width = 2.5 / p['island']
    unit = 2 * math.pi / p['a_cubic']
    allowed_n = {h * h + k * k + l * l for h in range(4) for k in range(4) for l in range(4)
                 if allowed(p['rule'], h, k, l) and (h, k, l) != (0, 0, 0)}
    out = np.zeros_like(q)
    for n, weight in zip(sorted(allowed_n), p['ring_weights']):   # structure factors differ ring to ring
        out += weight * np.exp(-(q - unit * math.sqrt(n)) ** 2 / (2 * width ** 2))
    texture = 1.0 + p['ring_texture'] * np.cos(np.arctan2(qy, qz)) ** 2
    return out * texture * np.exp(-(q / p['dw']) ** 2 / 2)


def peak_normalised(img: np.ndarray) -> np.ndarray:
    return img / max(float(img.max()), 1e-12)


def render(p: dict, geometry: tuple, coverage: float, disorder: float, brightness: float, rng: np.random.Generator):
    """One frame as [0, 1] floats (before quantisation) and the share of its lit pattern pixels (above the
    horizon) that come mainly from transmission through 3D crystallites. `geometry` is scattering_vectors(p)."""
    alpha, phi, qx, qy, qz = geometry
    # At grazing incidence the islands shadow the flat surface between them, so the reflected part falls
    # faster than the uncovered area; each part is scaled to its own peak before mixing.
    img = (1.0 - coverage) ** 2 * peak_normalised(surface_intensity(p, qx, qy, qz, disorder))
    bulk_share = 0.0
    if coverage > 0:
        bulk = ring_intensity(p, qx, qy, qz) if p['kind'] == 'rings' else island_intensity(p, qx, qy, qz)
        bulk = coverage * p['transmission_gain'] * peak_normalised(bulk)
        # what a person labelling the frame sees: of the clearly lit pixels above the horizon, the share
        # lit mainly by transmission
        total = img + bulk
        lit = (alpha > 0) & (total > 0.1 * np.percentile(total, 99.95))
        bulk_share = float(np.mean(bulk[lit] > img[lit])) if lit.any() else 0.0
        img = total
    img /= max(float(np.percentile(img, 99.95)), 1e-6)
    img += p['background'] * (1.0 + 2.0 * coverage) * np.exp(-np.hypot(alpha, phi) / 0.04)
    img *= 1.0 / (1.0 + np.exp(-alpha / (1.5 * p['rad_per_px'])))  # the sample's shadow below the horizon
    if p['direct_beam']:
        img += 2.0 * np.exp(-((alpha + p['theta']) ** 2 + phi ** 2) / (2 * (3 * p['rad_per_px']) ** 2))
    img = gaussian_filter(img, p['blur'])
    if p['screen']:
        h, w = img.shape
        y, x = np.mgrid[0:h, 0:w]
        r = np.hypot(x - w / 2, y - h / 2) / (p['screen'] * min(w, h))
        img *= np.clip(1.0 - p['vignetting'] * r ** 2, 0, 1) * np.clip((1.0 - r) * 40, 0.03, 1.0)
    img = np.clip(img * p['gain'] * brightness, 0, None)
    img = rng.poisson(img * p['photons']) / p['photons'] + rng.normal(0, p['read_noise'], img.shape)
    img = np.clip(img, 0, 1) ** p['gamma']
    if p['flip_v']:
        img = img[::-1]
    if p['flip_h']:
        img = img[:, ::-1]
    return img, bulk_share


def frame_plan(kind: str, n_frames: int, rng: np.random.Generator) -> list:
    """(coverage, fine class) per frame; transition runs skip the ambiguous middle."""
    if kind in ('layer', 'laue'):
        return [(rng.uniform(0.0, 0.05), f'{kind}_smooth') for _ in range(n_frames)]
    if kind == 'islands':
        return [(rng.uniform(0.6, 1.0), 'island_rough') for _ in range(n_frames)]
    if kind == 'rings':
        return [(rng.uniform(0.7, 1.0), 'ring_rough') for _ in range(n_frames)]
    n_smooth = n_frames // 2
    early = np.sort(rng.uniform(0.0, 0.1, n_smooth))
    late = np.sort(rng.uniform(0.6, 1.0, n_frames - n_smooth))
    return [(c, 'island_smooth') for c in early] + [(c, 'island_rough') for c in late]


def write_run(out: Path, seed: int, run: int, kind: str, n_frames: int) -> list:
    """Renders one run; a frame is written only when its pattern agrees with its label (LABEL_SHARE)."""
    rng = np.random.default_rng([seed, run])
    p = draw_run(rng, kind)
    geometry = scattering_vectors(p)   # the same camera and beam for every frame of the run
    rows = []
    for frame, (coverage, fine) in enumerate(frame_plan(kind, n_frames, rng)):
        # monolayer oscillations of the step disorder, a drifting beam
        disorder = min(0.5, p['disorder'] * (0.6 + 0.4 * abs(math.sin(0.9 * frame))))
        img, bulk_share = render(p, geometry, coverage, disorder, rng.uniform(0.85, 1.15), rng)
        rough = fine.endswith('_rough')
        if (bulk_share < LABEL_SHARE['rough']) if rough else (bulk_share > LABEL_SHARE['smooth']):
            continue
        name = f'seq{run:03d}_{frame:06d}.png'
        (out / fine).mkdir(parents=True, exist_ok=True)
        Image.fromarray(quantize(img, p['bits'])).save(out / fine / name, **PNG_OPTIONS)
        rows.append((f'{fine}/{name}', fine, f'seq{run:03d}', frame, f'{coverage:.3f}', f'{bulk_share:.3f}', kind,
                     p['width'], p['height'], p['bits']))
    return rows


def get_args_parser():
    parser = argparse.ArgumentParser(description='Kinematic RHEED frames (an independent test set).')
    parser.add_argument('--out', required=True, help='output folder (must not exist or be empty)')
    parser.add_argument('--runs', type=int, default=24, help='growth runs')
    parser.add_argument('--frames', type=int, default=8, help='frames per run')
    parser.add_argument('--seed', type=int, default=0)
    return parser


def main(args) -> None:
    out = Path(args.out)
    if args.runs < 1 or args.frames < 2:
        sys.exit('error: --runs must be >= 1 and --frames >= 2')
    if out.exists() and any(out.iterdir()):
        sys.exit(f'error: {out} is not empty; choose a new --out')
    out.mkdir(parents=True, exist_ok=True)
    kinds = np.random.default_rng([args.seed, 10 ** 6]).choice(KINDS, size=args.runs, p=KIND_WEIGHTS)
    kinds[:len(KINDS)] = KINDS[:args.runs]             # every kind at least once when there are enough runs
    rows = []
    for run, kind in enumerate(kinds, start=1):
        rows += write_run(out, args.seed, run, str(kind), args.frames)
    with open(out / 'frames.csv', 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['file', 'fine_class', 'sequence', 'frame', 'coverage', 'bulk_share', 'kind', 'width', 'height', 'bits'])
        writer.writerows(rows)
    planned = args.runs * args.frames
    print(f'{len(rows)} frames of {args.runs} runs in {out} ({planned - len(rows)} of {planned} left out: pattern and label disagree)')


if __name__ == '__main__':
    main(get_args_parser().parse_args())
