"Multi-process and whole-run checks of dyncompress.eval (issue 6) on the synthetic MVBench-layout benchmark."
import json, os, subprocess, sys, textwrap
from pathlib import Path
import pytest

os.environ.setdefault('OMP_NUM_THREADS', '1')
import torch
torch.set_num_threads(1)

from dyncompress.eval.records import read_jsonl, record_key, RECORD_FIELDS
from dyncompress.eval.evaluate import run_evaluation, load_items, synthetic_root

LEVELS = (1, 2, 4, 8, 16)
LIMIT = 1            # questions per synthetic task
BATCH = 4
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def bench(tmp_path_factory):
    "The synthetic benchmark, generated once, and its items."
    root = synthetic_root(tmp_path_factory.mktemp('synth'), n_synthetic=LIMIT)
    return root, load_items(root)


@pytest.fixture(scope='module')
def one_proc(bench, tmp_path_factory):
    "A full single-process run at five levels."
    root, items = bench
    out = tmp_path_factory.mktemp('one') / 'eval'
    res = run_evaluation('tiny', out, mvbench_root=root, pool_levels=LEVELS, batch_size=BATCH, num_workers=1,
                         device='cpu')
    return out, items, res


def _comparable(r):
    "A record without its timing; option probabilities rounded (batch composition changes float noise)."
    r = {k: v for k, v in r.items() if k != 'latency_s'}
    if r['option_probs'] is not None: r['option_probs'] = [round(p, 4) for p in r['option_probs']]
    if r['confidence'] is not None: r['confidence'] = round(r['confidence'], 4)
    return r


def test_five_levels_one_pass(one_proc):
    out, items, res = one_proc
    recs = read_jsonl(out / 'records.jsonl')
    assert res['complete'] and res['records'] == len(items) * len(LEVELS) == len(recs)
    assert {record_key(r) for r in recs} == {(it.qid, b) for it in items for b in LEVELS}
    assert all(list(r) == list(RECORD_FIELDS) for r in recs)
    assert len({r['visual_tokens'] for r in recs}) == len(LEVELS)
    for name in ('accuracy_robust', 'accuracy_official', 'accuracy_seed', 'summary', 'tasks'):
        assert (out / f'{name}.csv').exists() and (out / f'{name}.md').exists()
    assert 'Overall' in (out / 'accuracy_robust.md').read_text()
    assert not list((out / 'shards').glob('*.jsonl'))


def test_rerun_does_no_new_work(bench, one_proc):
    out, items, _ = one_proc
    before = (out / 'records.jsonl').read_bytes()
    res = run_evaluation('tiny', out, items=items, mvbench_root=bench[0], pool_levels=LEVELS,   # the same benchmark
                         batch_size=BATCH, num_workers=0, device='cpu')
    assert res['records'] == 0 and res['items'] == 0 and res['complete']
    assert (out / 'records.jsonl').read_bytes() == before


def test_killed_run_resumes(bench, one_proc, tmp_path):
    "Stopped after one batch, then a half-written line (a kill during an append): the rerun completes cleanly."
    root, items = bench
    out, levels = tmp_path / 'eval', (4, 16)          # two cheap levels keep the test short
    kw = dict(items=items, pool_levels=levels, batch_size=BATCH, num_workers=0, device='cpu')
    part = run_evaluation('tiny', out, stop_after=1, **kw)
    assert 0 < part['records'] < len(items) * len(levels)
    shard = out / 'shards' / 'rank0.jsonl'
    with open(shard, 'ab') as f: f.write(b'{"qid": "half a rec')
    res = run_evaluation('tiny', out, **kw)
    assert res['complete'] and res['records'] == len(items) * len(levels) - part['records']
    recs = [json.loads(l) for l in (out / 'records.jsonl').read_text().splitlines()]   # every line parses
    keys = [record_key(r) for r in recs]
    assert len(keys) == len(set(keys)) == len(items) * len(levels)
    ref = [r for r in read_jsonl(one_proc[0] / 'records.jsonl') if r['pool_level'] in levels]
    assert [_comparable(r) for r in recs] == [_comparable(r) for r in ref]


WORKER = textwrap.dedent('''
    import os, sys, torch
    torch.set_num_threads(1)
    from dyncompress.eval.evaluate import run_evaluation
    run_evaluation('tiny', sys.argv[1], mvbench_root=sys.argv[2], pool_levels=(1, 2, 4, 8, 16), batch_size=%d,
                   num_workers=0, device='cpu')
''' % BATCH)


def test_two_process_sharding_matches_one(bench, one_proc, tmp_path):
    root, items = bench
    script = tmp_path / 'worker.py'; script.write_text(WORKER)
    out = tmp_path / 'eval2'
    env = dict(os.environ, OMP_NUM_THREADS='1')
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_port', '29533',
           str(script), str(out), str(root)]
    p = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    two = read_jsonl(out / 'records.jsonl')
    one = read_jsonl(one_proc[0] / 'records.jsonl')
    assert [_comparable(r) for r in two] == [_comparable(r) for r in one]
