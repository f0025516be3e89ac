"""A real MVBench video (issue 11, "the real path, checked offline"): every other video in the tests was written by us
with PyAV; this one is MVBench's own file — a real h264 stream, a non-square frame, a real frame rate and length.

The folder of real items comes from `$DC_MVBENCH_REAL` (`.ci/run` sets it to `../shared/data/mvbench_real` when that
exists); it is laid out like MVBench's `video/` root. Without it every test here is skipped and says why.

The item is MVBench's first Action Sequence question (`json/action_sequence.json`, item 0, a Charades clip from STAR).
Its `start`/`end` are not known here, so the bounded checks use a bound chosen inside the clip (`BOUND`).
The frame-index formulas are written out below from the two harnesses' code, independently of `dyncompress`:
- the seed (VideoGPT+): `eval/video_encoding.py::_get_rawvideo_dec` of github.com/mbzuai-oryx/VideoGPT-plus
  (called by `eval/mvbench/inference/ddp.py` with `max_frames = min_frames = 16`, 1 fps);
- the official one: `get_index` of MVBench's own evaluation notebook (OpenGVLab/Ask-Anything, `video_chat2/mvbench.ipynb`).
"""
import json, os, subprocess, sys
from pathlib import Path
import numpy as np
import pytest

ENV_VAR = 'DC_MVBENCH_REAL'
TASK = 'action_sequence'
PREFIX = 'star/Charades_v1_480/'                # the task's video folder under MVBench's video/
CLIP = 'ZS9XR.mp4'
ITEM = dict(video=CLIP, question='What happened after the person took the food?',
            candidates=['Ate the medicine.', 'Tidied up the blanket.', 'Put down the cup/glass/bottle.', 'Took the box.'],
            answer='Ate the medicine.')
# What the folder's README measured on the file: h264, 480x270, 25 fps, 1,108 frames.
WIDTH, HEIGHT, FPS, N_FRAMES = 480, 270, 25.0, 1108
BOUND = (3.6, 12.9)                              # seconds; a bound inside the 44.3 s clip (the item's own is not known)
N = 16                                           # frames sampled per video by both harnesses
BIN = Path(sys.executable).parent                # the venv's console scripts


def _real_folder() -> Path:
    d = os.environ.get(ENV_VAR)
    if not d: pytest.skip(f"${ENV_VAR} is not set: no folder of real MVBench videos (.ci/run sets it when "
                          "../shared/data/mvbench_real exists)")
    if not (Path(d) / 'video' / PREFIX / CLIP).is_file():
        pytest.skip(f"${ENV_VAR}={d} does not hold video/{PREFIX}{CLIP} (MVBench's first Action Sequence clip)")
    return Path(d)


@pytest.fixture(scope='module')
def real() -> Path:
    "The real folder (skips the module's tests when it is not given)."
    return _real_folder()


@pytest.fixture(scope='module')
def root(real, tmp_path_factory) -> Path:
    "A MVBench root: `json/` with the 20 task files (the item in action_sequence.json, the others empty) and `video/` linked to the real folder's."
    from dyncompress.data.mvbench import MVBENCH_TASKS
    r = tmp_path_factory.mktemp('mvbench_real')
    (r / 'json').mkdir()
    for t in MVBENCH_TASKS.values():
        rows = [ITEM | dict(start=BOUND[0], end=BOUND[1])] if t.name == TASK else []
        (r / 'json' / t.json).write_text(json.dumps(rows, indent=1))
    (r / 'video').symlink_to((real / 'video').resolve(), target_is_directory=True)
    return r


@pytest.fixture(scope='module')
def item(root):
    "The one item, read by our MVBench reader from the real task's layout."
    from dyncompress.data.mvbench import read_mvbench
    items = read_mvbench(root)
    assert len(items) == 1
    return items[0]


# --- the two harnesses' frame indices, written out by hand for a video file -----------------------------------------

def seed_indices_by_hand(n_frames: int, fps: float, bound=None, n: int = N) -> list[int]:
    "`_get_rawvideo_dec`: 1-fps positions in the bound (seconds truncated to ints); linspace down to n, or re-stride up to n."
    if bound is None: f_start, f_end = 0, n_frames - 1
    else:
        s, e = max(int(bound[0]), 0), max(int(bound[1]), 0)
        f_start, f_end = int(s * fps), int(min(e * fps, n_frames - 1))
    pos = list(range(f_start, f_end + 1, int(round(fps / 1))))
    if len(pos) > n: return [pos[k] for k in np.linspace(0, len(pos) - 1, num=n, dtype=int)]
    if len(pos) < n:
        stride = max(1, (f_end - f_start) // (n - 1))
        return list(range(f_start, f_start + stride * (n - 1) + 1, stride))
    return pos


def official_indices_by_hand(n_frames: int, fps: float, bound=None, n: int = N) -> list[int]:
    "`get_index`: the middle of each of n equal segments between round(start*fps) and min(round(end*fps), last frame)."
    start, end = bound if bound is not None else (-100000, 100000)
    start_idx, end_idx = max(0, round(start * fps)), min(round(end * fps), n_frames - 1)
    seg = (end_idx - start_idx) / n
    return [int(start_idx + seg / 2 + np.round(seg * k)) for k in range(n)]


def test_reader_sees_the_real_file(item, real):
    "The MVBench-format task file resolves to the real clip; both backends report its length and rate."
    from dyncompress.data.video import open_video
    assert Path(item.video).resolve() == (real / 'video' / PREFIX / CLIP).resolve()
    assert (item.qid, item.answer_idx, item.bound) == (f'{TASK}/0', 0, BOUND)
    for backend in ('decord', 'pyav'):
        src = open_video(item.video, backend)
        assert (src.num_frames, src.fps) == (N_FRAMES, FPS), backend


def test_decord_and_pyav_agree_on_the_sampled_frames(item):
    "Both backends decode the frames each protocol samples to the same pixels (a tolerance: their FFmpeg builds differ)."
    from dyncompress.data.mvbench import load_item_frames
    for protocol in ('seed', 'official'):
        vd, cd, idx_d = load_item_frames(item, N, N, protocol, backend='decord')
        va, ca, idx_a = load_item_frames(item, N, N, protocol, backend='pyav')
        assert idx_d == idx_a
        assert vd.shape == va.shape == (N, HEIGHT, WIDTH, 3) and vd.dtype == va.dtype == np.uint8
        diff = np.abs(vd.astype(np.int16) - va.astype(np.int16))
        assert diff.mean() <= 1.0 and np.percentile(diff, 99) <= 4, (protocol, diff.mean(), diff.max())
        assert np.array_equal(cd, vd)                       # 16 context frames of 16 video frames: the same ones
        assert vd.std() > 10                                # real picture content, not a blank decode


def test_seed_frame_indices_match_the_formula_by_hand(item):
    "The seed protocol on the real clip, unbounded (linspace over 45 one-second positions) and bounded (re-strided)."
    from dyncompress.data.mvbench import item_frame_indices, seed_frame_indices
    unbounded = seed_indices_by_hand(N_FRAMES, FPS)
    assert unbounded[0] == 0 and unbounded[-1] == 1100 and len(set(unbounded)) == N   # 45 positions 0..1100, 16 kept
    assert seed_frame_indices(N_FRAMES, FPS, N) == unbounded
    bounded = seed_indices_by_hand(N_FRAMES, FPS, BOUND)
    assert bounded == list(range(75, 301, 15))              # [3 s, 12 s] -> frames 75..300: 10 positions, re-strided by 15
    assert item_frame_indices(item, N, 'seed') == bounded   # the item carries BOUND


def test_official_frame_indices_match_the_formula_by_hand(item):
    "MVBench's own `get_index` on the real clip, unbounded and bounded (segments of (322 - 90) / 16 = 14.5 frames)."
    from dyncompress.data.mvbench import item_frame_indices, official_frame_indices
    unbounded = official_indices_by_hand(N_FRAMES, FPS)
    assert unbounded[0] == 34 and unbounded[-1] == 1072     # segments of 1107/16 frames, their middles
    assert official_frame_indices(N_FRAMES - 1, FPS, N) == unbounded
    bounded = official_indices_by_hand(N_FRAMES, FPS, BOUND)
    assert bounded[0] == 97 and bounded[-1] == 315          # int(90 + 7.25), int(90 + 7.25 + np.round(217.5) = 218)
    assert item_frame_indices(item, N, 'official') == bounded
    assert bounded != item_frame_indices(item, N, 'seed')   # the two protocols see different frames


def test_processors_on_the_non_square_frames(item):
    "InternVideo2's squash to 224² and CLIP's shortest-side-336 + centre crop (or pad to square) on 480x270 frames."
    from PIL import Image
    from dyncompress.config import Geometry
    from dyncompress.data.mvbench import load_item_frames
    from dyncompress.data.processors import ContextProcessor, VideoProcessor, CLIP_MEAN, CLIP_STD
    g = Geometry()
    v, c, _ = load_item_frames(item, g.num_frames, g.num_context_images, 'seed')
    x = VideoProcessor(g)(v)
    assert x.shape == (g.num_frames, 3, g.video_size, g.video_size) and bool(x.isfinite().all())
    y = ContextProcessor(g)(c)
    assert y.shape == (g.num_context_images, 3, g.image_size, g.image_size)
    # by hand: height 270 -> 336, width int(336 * 480 / 270) = 597, then the middle 336 columns
    wide = int(g.image_size * WIDTH / HEIGHT)
    left = (wide - g.image_size) // 2
    a = np.asarray(Image.fromarray(c[0]).resize((wide, g.image_size), resample=Image.BICUBIC))[:, left:left + g.image_size]
    hand = (a.astype(np.float32) / 255 - np.array(CLIP_MEAN, dtype=np.float32)) / np.array(CLIP_STD, dtype=np.float32)
    assert np.allclose(y[0].permute(1, 2, 0).numpy(), hand, atol=1e-5)
    z = ContextProcessor(g, pad_to_square=True)(c)
    assert z.shape == y.shape
    # padded to 480x480 with the mean colour (105 rows above the picture = 73.5 rows at 336): near zero once normalised
    pad_rows = (WIDTH - HEIGHT) // 2 * g.image_size // WIDTH
    assert float(z[:, :, :pad_rows - 4].abs().max()) < 0.02 and float(z[:, :, pad_rows + 4:-pad_rows - 4].std()) > 0.1


def test_dc_evaluate_writes_a_sound_record_for_the_real_clip(root, real, tmp_path):
    "The tiny model through the installed `dc_evaluate` on the real file: exit 0, one answered record per level, complete."
    from dyncompress.config import GEOMETRIES
    from dyncompress.pooling import visual_token_count
    out, levels = tmp_path / 'eval', (2, 16)
    p = subprocess.run([str(BIN / 'dc_evaluate'), '--out_dir', str(out), '--mvbench_root', str(root),
                        '--pool_levels', ','.join(map(str, levels)), '--num_workers', '0', '--device', 'cpu'],
                       env=dict(os.environ, OMP_NUM_THREADS='1'), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert '2 new records; 2/2 answered, 0 errors' in p.stdout, p.stdout
    recs = [json.loads(l) for l in (out / 'records.jsonl').read_text().splitlines()]
    assert sorted(r['pool_level'] for r in recs) == list(levels)
    for r in recs:
        assert r['error'] is None and r['qid'] == f'{TASK}/0' and r['task'] == TASK
        assert Path(r['video']).resolve() == (real / 'video' / PREFIX / CLIP).resolve()
        assert r['gt'] == '(A) Ate the medicine.' and r['answer_idx'] == 0 and r['candidates'] == ITEM['candidates']
        assert ITEM['question'] in r['prompt'] and r['prompt'].count('<image>') == GEOMETRIES['tiny'].num_frames
        assert r['visual_tokens'] == visual_token_count(r['pool_level'], GEOMETRIES['tiny'])
        assert isinstance(r['pred'], str) and len(r['option_probs']) == len(ITEM['candidates'])
        assert abs(sum(r['option_probs']) - 1) < 1e-4
    metrics = json.loads((out / 'metrics.json').read_text())
    assert (metrics['complete'], metrics['present'], metrics['errors']) == (True, 2, 0)
    settings = json.loads((out / 'eval_settings.json').read_text())
    assert settings['mvbench_root'] == str(root.resolve()) and settings['protocol'] == 'seed'
