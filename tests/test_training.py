"""Training checks that need whole processes: the `dc_train` console script (dyncompress.launch), papermill on the
finetune driver, a 2-process DeepSpeed ZeRO-2 run, and resuming a killed run. All on CPU with the tiny preset
and a small synthetic set; OMP_NUM_THREADS=1 throughout (the test machines are shared)."""
import json, os, signal, subprocess, sys, time
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'TOKENIZERS_PARALLELISM': 'false', 'PYTHONWARNINGS': 'ignore'}


def run(cmd, cwd=ROOT, timeout=300):
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{cmd} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    return r


def dc_train(*args):
    "The installed `dc_train` command line (torchrun below starts the same command as `-m dyncompress.launch`)."
    return [BIN/'dc_train', *args]


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    from dyncompress.data.synthetic import make_synthetic
    d = tmp_path_factory.mktemp('synthetic')
    make_synthetic(d, n_train=8, n_eval=1)   # 48 training clips over the 6 tasks
    return d


def metrics(d): return json.loads((Path(d)/'metrics.json').read_text())


def tokens(b):
    "Visual tokens per video at pool level `b` for the tiny preset's geometry."
    from dyncompress.config import GEOMETRIES
    from dyncompress.pooling import visual_token_count
    return visual_token_count(b, GEOMETRIES['tiny'])


def test_finetune_lowers_loss(data, tmp_path):
    out = tmp_path/'ft'
    t0 = time.time()
    run(dc_train('finetune', '--data_root', data, '--output_dir', out, '--max_steps', 20, '--pool_level', 8))
    assert time.time() - t0 < 120
    m = metrics(out)
    losses = [s['loss'] for s in m['step_losses']]
    assert m['global_step'] == 20 and len(losses) == 20
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert last < first - 0.4, losses
    assert m['visual_tokens_per_sample'] == {'8': tokens(8)} and m['tokens_per_s'] > 0 and m['wall_time_s'] > 0
    assert (out/'loss.png').stat().st_size > 1000
    assert json.loads((out/'config.json').read_text())['pool_level'] == 8


def test_papermill_finetune_with_injected_pool_level(data, tmp_path):
    nb = tmp_path/'pool4.ipynb'
    run([BIN/'papermill', ROOT/'nbs'/'finetune.ipynb', nb, '-p', 'pool_level', '4', '-p', 'max_steps', '2',
         '-p', 'data_root', str(data), '-p', 'output_dir', str(tmp_path/'run'), '--cwd', tmp_path])
    tags = [c['metadata'].get('tags', []) for c in json.loads(nb.read_text())['cells']]
    i = tags.index(['parameters'])
    assert 'injected-parameters' in tags[i + 1]                 # injected right after the parameters cell
    m = metrics(tmp_path/'run')
    assert (m['pool_level'], m['global_step'], m['visual_tokens_per_sample']) == (4, 2, {'4': tokens(4)})


def test_deepspeed_zero2_two_ranks(data, tmp_path):
    out = tmp_path/'ds'
    run([BIN/'torchrun', '--nproc_per_node', 2, '--master_port', 29517, '-m', 'dyncompress.launch', 'finetune',
         '--data_root', data, '--output_dir', out, '--max_steps', 3, '--pool_level', 8, '--deepspeed', 'zero2',
         '--opts', '{"record_batches": true, "per_device_train_batch_size": 2}'], timeout=400)
    m = metrics(out)
    assert (m['world_size'], m['global_step'], m['samples']) == (2, 3, 12)
    assert json.loads((out/'ds_zero2.json').read_text())['zero_optimization']['stage'] == 2
    r0, r1 = (set(json.loads((out/f'batches_rank{r}.json').read_text())) for r in (0, 1))
    assert len(r0) == len(r1) == 6 and not r0 & r1          # each rank saw its own samples
    # the output loads for evaluation and answers at two pool levels
    import torch
    from dyncompress.launch import load_trained
    from dyncompress.data.datasets import VideoInstructDataset, DataCollator, resolve_datasets
    model, tok = load_trained(out)
    ds = VideoInstructDataset(resolve_datasets('SYNTHETIC', data), tok, model.geom, max_samples=2)
    batch = DataCollator(tok.pad_token_id)([ds[0], ds[1]])
    with torch.no_grad():
        for b in (8, 16): assert torch.isfinite(model(**batch, pool_level=b).loss)


def test_killed_run_resumes(data, tmp_path):
    out = tmp_path/'kill'
    cmd = dc_train('finetune', '--data_root', data, '--output_dir', out, '--max_steps', 10, '--pool_level', 16,
                   '--opts', '{"save_steps": 2, "logging_steps": 1}')
    p = subprocess.Popen([str(c) for c in cmd], cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    try:
        deadline = time.time() + 180
        while not (out/'checkpoint-4'/'trainer_state.json').exists():
            assert p.poll() is None and time.time() < deadline, 'run ended or stalled before checkpoint-4'
            time.sleep(0.1)
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    assert not (out/'metrics.json').exists()                     # it really died mid-way
    done = sorted(int(c.name.split('-')[1]) for c in out.glob('checkpoint-*') if (c/'trainer_state.json').exists())
    assert done and done[-1] < 10
    run(cmd)
    m = metrics(out)
    assert m['resumed_from'].endswith(f'checkpoint-{done[-1]}') and m['global_step'] == 10
    assert [s['step'] for s in m['step_losses']] == list(range(done[-1], 10))  # only the missing steps ran
    assert [l['step'] for l in m['losses']] == list(range(1, 11))           # the logged curve is whole
