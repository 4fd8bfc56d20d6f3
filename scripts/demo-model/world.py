"""The demo model's world: flat-coloured shapes on flat backgrounds, 128x128, with captions.

Everything is drawn from a seeded numpy generator, so a dataset is fixed by its seed. Some
colour/shape pairs (HELD_BACK) never appear in training; the picture tests ask for them to see
whether the model composes words it learned apart.
"""
import numpy as np

SIZE = 128
COLOURS = {
    'red': (220, 30, 30), 'orange': (245, 140, 20), 'yellow': (240, 220, 30), 'green': (30, 170, 50),
    'blue': (30, 70, 220), 'purple': (140, 40, 190), 'white': (245, 245, 245), 'black': (20, 20, 20),
}
SHAPES = ['circle', 'square', 'triangle', 'star']
HELD_BACK = {('purple', 'circle'), ('orange', 'square'), ('white', 'triangle'), ('green', 'star')}
# Radius (half the extent) in pixels for each size word; None is the unsized default.
SIZES = {'small': 18, None: 30, 'large': 44}
# Centre of the shape for each position phrase; None is the centre of the picture.
POSITIONS = {None: (64, 64), 'in the top left corner': (34, 34), 'in the top right corner': (94, 34),
             'in the bottom left corner': (34, 94), 'in the bottom right corner': (94, 94)}
SUPERSAMPLE = 4


def shape_mask(shape, cx, cy, r):
    """Anti-aliased coverage (0..1) of one shape, by supersampling only the pixels near it."""
    x0, y0 = max(0, int(cx - r) - 2), max(0, int(cy - r) - 2)
    x1, y1 = min(SIZE, int(cx + r) + 3), min(SIZE, int(cy + r) + 3)
    cxs = (np.arange(x0 * SUPERSAMPLE, x1 * SUPERSAMPLE) + 0.5) / SUPERSAMPLE
    cys = (np.arange(y0 * SUPERSAMPLE, y1 * SUPERSAMPLE) + 0.5) / SUPERSAMPLE
    x, y = np.meshgrid(cxs - cx, cys - cy)
    if shape == 'circle':
        inside = x * x + y * y <= r * r
    elif shape == 'square':
        s = r * 0.85
        inside = (np.abs(x) <= s) & (np.abs(y) <= s)
    elif shape == 'triangle':
        # Upright isosceles triangle with its bounding box centred on (cx, cy).
        t = (y + r) / (2 * r)
        inside = (t >= 0) & (t <= 1) & (np.abs(x) <= t * r)
    else:
        inside = star_inside(x, y, r)
    out = np.zeros((SIZE, SIZE), np.float32)
    out[y0:y1, x0:x1] = inside.reshape(y1 - y0, SUPERSAMPLE, x1 - x0, SUPERSAMPLE).mean(axis=(1, 3))
    return out


def star_inside(x, y, r, points=5, inner=0.4):
    """A five-pointed star, one point up: inside when the radius is under the star's edge at that angle."""
    ang = np.arctan2(x, -y) % (2 * np.pi / points)
    half = np.pi / points
    # Edge from an outer tip (angle 0, radius r) to an inner vertex (angle half, radius inner*r), mirrored.
    a = np.minimum(ang, 2 * half - ang)
    p1 = np.array([0.0, r])
    p2 = np.array([np.sin(half) * inner * r, np.cos(half) * inner * r])
    d = p2 - p1
    # Radius where the ray at angle a meets the segment p1-p2.
    sa, ca = np.sin(a), np.cos(a)
    denom = sa * d[1] - ca * d[0]
    t = (ca * p1[0] - sa * p1[1]) / denom
    edge = np.hypot(p1[0] + t * d[0], p1[1] + t * d[1])
    return np.hypot(x, y) <= edge


def describe(obj, with_size=True, with_pos=True):
    words = ['a']
    if with_size and obj['size']:
        words.append(obj['size'])
    words += [obj['colour'], obj['shape']]
    if with_pos and obj['position']:
        words.append(obj['position'])
    return ' '.join(words)


def caption(scene, rng):
    objs = scene['objects']
    if len(objs) == 1:
        text = describe(objs[0], with_size=rng.random() < 0.9, with_pos=True)
    else:
        text = ' and '.join(describe(o) for o in objs)
    if rng.random() < 0.85:
        text += f" on a {scene['background']} background"
    return text


def allowed(colour, shape, held_back):
    return not held_back or (colour, shape) not in HELD_BACK


def random_scene(rng, held_back=True):
    bg = str(rng.choice(list(COLOURS)))
    n = 1 if rng.random() < 0.8 else 2
    if n == 1:
        positions = [list(POSITIONS)[rng.integers(len(POSITIONS))]]
    else:
        # Two objects sit in opposite corners so that they never overlap.
        pairs = [('in the top left corner', 'in the bottom right corner'), ('in the top right corner', 'in the bottom left corner')]
        positions = list(pairs[rng.integers(2)])
    objects = []
    for pos in positions:
        while True:
            colour = str(rng.choice(list(COLOURS)))
            shape = str(rng.choice(SHAPES))
            if colour != bg and allowed(colour, shape, held_back):
                break
        sizes = ['small', None] if pos else ['small', None, 'large']
        objects.append({'shape': shape, 'colour': colour, 'size': sizes[rng.integers(len(sizes))], 'position': pos})
    return {'background': bg, 'objects': objects}


def render(scene, rng=None):
    """The scene as uint8 HxWx3, with a small jitter of position and size when rng is given."""
    img = np.empty((SIZE, SIZE, 3), np.float32)
    img[:] = COLOURS[scene['background']]
    for obj in scene['objects']:
        cx, cy = POSITIONS[obj['position']]
        r = SIZES[obj['size']]
        if rng is not None:
            cx += rng.uniform(-4, 4)
            cy += rng.uniform(-4, 4)
            r *= rng.uniform(0.9, 1.1)
        m = shape_mask(obj['shape'], cx, cy, r)[..., None]
        img = img * (1 - m) + np.array(COLOURS[obj['colour']], np.float32) * m
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def dataset(n, seed):
    """n (image uint8 [n,128,128,3], scene) pairs; captions are drawn per epoch by the trainer."""
    rng = np.random.default_rng(seed)
    scenes = [random_scene(rng) for _ in range(n)]
    images = np.stack([render(s, rng) for s in scenes])
    return images, scenes
