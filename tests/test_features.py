"""The tower-feature cache (dyncompress.model.features) and its use in training and evaluation: hit/miss,
rebuild on a tower or video change, a corrupt file, the same loss and the same evaluation records with and
without the cache, and the console scripts. CPU, tiny preset, OMP_NUM_THREADS=1 (shared machines)."""
import json, os, subprocess, sys
from pathlib import Path
import numpy as np
import pytest

os.environ.setdefault('OMP_NUM_THREADS', '1')
import torch
torch.set_num_threads(1)

from dyncompress.config import GEOMETRIES
from dyncompress.data.video import write_video
from dyncompress.model.loading import build_tiny
from dyncompress.model.features import FeatureCache, training_clip, tower_fingerprint

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'TOKENIZERS_PARALLELISM': 'false', 'PYTHONWARNINGS': 'ignore'}


def quiet(*a, **k): pass


@pytest.fixture(scope='module')
def tiny():
    model, tok = build_tiny()
    return model, tok


@pytest.fixture
def videos(tmp_path):
    rng = np.random.default_rng(0)
    return [write_video(tmp_path / 'v' / f'{i}.mp4', rng.integers(0, 255, (20, 48, 48, 3), dtype=np.uint8)) for i in range(2)]


def test_geometry_is_the_tiny_preset(tiny):
    assert tiny[0].geom == GEOMETRIES['tiny']


def test_hit_miss_and_shapes(tiny, videos, tmp_path):
    model, _ = tiny
    g = GEOMETRIES['tiny']
    cache = FeatureCache(tmp_path / 'c', model, log=quiet)
    clips = [cache.clip(p) for p in videos]
    keys = cache.fill(clips)
    assert cache.stats == dict(hits=0, misses=2, corrupt=0)
    assert cache.fill(clips) == keys and cache.stats['hits'] == 2 and cache.stats['misses'] == 2
    v, c = cache.get(keys[0])
    assert tuple(v.shape) == (g.num_frames, g.video_grid ** 2, g.video_dim)
    assert tuple(c.shape) == (g.num_context_images, g.image_grid ** 2, g.image_dim)
    assert v.dtype == c.dtype == torch.float32
    assert cache.file(keys[0]).parent == tmp_path / 'c' / tower_fingerprint(model)


def test_tower_change_rebuilds(tiny, videos, tmp_path):
    model, _ = tiny
    FeatureCache(tmp_path / 'c', model, log=quiet).fill([training_clip(p, model.geom) for p in videos])
    other, _ = build_tiny()
    with torch.no_grad(): next(other.video_tower.parameters()).view(-1)[0] += 1e-3
    c2 = FeatureCache(tmp_path / 'c', other, log=quiet)
    c2.fill([c2.clip(p) for p in videos])
    assert c2.stats['misses'] == 2 and c2.stats['hits'] == 0
    assert len(list((tmp_path / 'c').iterdir())) == 2            # one folder per tower fingerprint


def test_video_change_rebuilds_that_clip(tiny, videos, tmp_path):
    model, _ = tiny
    cache = FeatureCache(tmp_path / 'c', model, log=quiet)
    k1 = cache.fill([cache.clip(p) for p in videos])
    write_video(videos[0], np.random.default_rng(9).integers(0, 255, (20, 48, 48, 3), dtype=np.uint8))
    k2 = cache.fill([cache.clip(p) for p in videos])
    assert (k1[0] != k2[0], k1[1] == k2[1]) == (True, True)
    assert cache.stats['misses'] == 3 and cache.stats['hits'] == 1


def test_corrupt_file_reported_and_rebuilt(tiny, videos, tmp_path):
    model, _ = tiny
    lines = []
    cache = FeatureCache(tmp_path / 'c', model, log=lines.append)
    clips = [cache.clip(p) for p in videos]
    keys = cache.fill(clips)
    good = cache.get(keys[1])
    f = cache.file(keys[1])
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])    # truncated
    cache.fill(clips)
    assert cache.stats['corrupt'] == 1
    assert any(str(f) in l and 'corrupt' in l for l in lines), lines
    assert not list(f.parent.glob('*.tmp'))
    v, c = cache.get(keys[1])
    torch.testing.assert_close(v, good[0], rtol=0, atol=1e-6)   # rebuilt in a batch of one
    torch.testing.assert_close(c, good[1], rtol=0, atol=1e-6)


def test_cached_training_loss_equals_frames_loss(tiny, tmp_path):
    "A batch of training samples: the loss from cached tower features equals the loss from decoded frames."
    from dyncompress.data.synthetic import make_synthetic
    from dyncompress.data.datasets import VideoInstructDataset, DataCollator, resolve_datasets
    model, tok = tiny
    make_synthetic(tmp_path / 'd', n_train=1, n_eval=0)
    mk = lambda: VideoInstructDataset(resolve_datasets('SYNTHETIC', tmp_path / 'd'), tok, model.geom, max_samples=4)
    plain, cached = mk(), mk()
    cached.use_features(FeatureCache(tmp_path / 'c', model, log=quiet), batch_size=2)
    col = DataCollator(tok.pad_token_id)
    b0, b1 = col([plain[i] for i in range(4)]), col([cached[i] for i in range(4)])
    assert b1['videos'] is None and len(b1['features']) == 4
    with torch.no_grad():
        l0, l1 = model(**b0, pool_level=4).loss, model(**b1, pool_level=4).loss
    torch.testing.assert_close(l1, l0, rtol=0, atol=1e-5)


@pytest.fixture(scope='module')
def bench(tmp_path_factory):
    from dyncompress.eval.evaluate import synthetic_root, load_items
    root = synthetic_root(tmp_path_factory.mktemp('synth'), n_synthetic=1)
    return root, load_items(root)


def _strip(recs): return [{k: v for k, v in r.items() if k != 'latency_s'} for r in recs]


def test_eval_records_equal_with_and_without_cache(bench, tmp_path):
    from dyncompress.eval.evaluate import run_evaluation
    from dyncompress.eval.records import read_jsonl
    root, items = bench
    kw = dict(items=items, pool_levels=(8, 16), batch_size=4, num_workers=0, device='cpu', log=quiet)
    run_evaluation('tiny', tmp_path / 'plain', **kw)
    cold = run_evaluation('tiny', tmp_path / 'cold', feature_cache=tmp_path / 'fc', **kw)
    warm = run_evaluation('tiny', tmp_path / 'warm', feature_cache=tmp_path / 'fc', **kw)
    assert (cold['features_cached'], cold['features_encoded']) == (0, len(items))
    assert (warm['features_cached'], warm['features_encoded']) == (len(items), 0)
    ref = _strip(read_jsonl(tmp_path / 'plain' / 'records.jsonl'))
    assert len(ref) == 2 * len(items)
    for d in ('cold', 'warm'): assert _strip(read_jsonl(tmp_path / d / 'records.jsonl')) == ref


def run(cmd, timeout=300):
    r = subprocess.run([str(c) for c in cmd], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{cmd} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def test_console_dc_train_and_dc_evaluate_with_cache(bench, tmp_path):
    from dyncompress.data.synthetic import make_synthetic
    make_synthetic(tmp_path / 'd', n_train=1, n_eval=0)
    fc = tmp_path / 'fc'
    run([BIN / 'dc_train', 'finetune', '--data_root', tmp_path / 'd', '--output_dir', tmp_path / 'ft', '--max_steps', 2,
         '--pool_level', 16, '--feature_cache', fc, '--opts', '{"per_device_train_batch_size": 2}'])
    m = json.loads((tmp_path / 'ft' / 'metrics.json').read_text())
    assert m['global_step'] == 2 and m['feature_cache']['misses'] == m['feature_cache']['videos'] > 0
    root, items = bench
    r = run([BIN / 'dc_evaluate', '--model', tmp_path / 'ft', '--out_dir', tmp_path / 'ev', '--mvbench_root', root,
             '--pool_levels', '16', '--num_workers', 0, '--feature_cache', fc])
    assert f"{len(items)} encoded and stored" in r.stdout, r.stdout
    assert len((tmp_path / 'ev' / 'records.jsonl').read_text().splitlines()) == len(items)


def test_console_dc_train_benchmark(tmp_path):
    r = run([BIN / 'dc_train_benchmark', '--pool_levels', '16', '--steps', 1, '--n_train', 1, '--batch_size', 2,
             '--out_dir', tmp_path / 'b', '--out', tmp_path / 'b.json'])
    assert 'pool | visual tokens | s/step frames | s/step cached | frames/cached' in r.stdout, r.stdout
    rows = json.loads((tmp_path / 'b.json').read_text())
    assert [row['pool_level'] for row in rows] == [16] and rows[0]['frames_s'] > 0 and rows[0]['cached_s'] > 0
