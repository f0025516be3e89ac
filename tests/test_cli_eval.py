"""The evaluation console scripts (`dc_evaluate`, `dc_eval_benchmark`) run as a user runs them (issue 11): exit status,
the one stderr line of a refused input, error records retried by a re-run, and a folder that refuses other settings."""
import json, os, subprocess, sys
from pathlib import Path
import numpy as np
import pytest

from dyncompress.data.video import write_video
from dyncompress.data.mvbench import MVBenchTask, write_task_table

BIN = Path(sys.executable).parent          # the venv's console scripts
LEVEL = '4'                                # one cheap pool level per run
FRAMES = (12, 32, 32, 3)                   # (T, H, W, 3) of each test video
ENV = dict(os.environ, OMP_NUM_THREADS='1')
ENV.pop('DC_DEBUG', None)


def run(cmd, *args, cwd=None, **env):
    "Run console script `cmd` with `args`: (exit status, stdout, stderr lines)."
    p = subprocess.run([str(BIN / cmd), *map(str, args)], cwd=cwd, env=dict(ENV, **env), capture_output=True,
                       text=True, timeout=600)
    return p.returncode, p.stdout, p.stderr.strip().splitlines()


def refused(cmd, *args, **env) -> str:
    "The single stderr line of a refused command (exit status 2, no traceback)."
    rc, out, err = run(cmd, *args, **env)
    assert rc == 2 and len(err) == 1 and err[0].startswith(f'{cmd}: error: '), (rc, out, err)
    return err[0]


def mvbench(root: Path, missing=(), duplicate: bool = False) -> Path:
    "Two tasks of two questions in MVBench's layout; videos named in `missing` are not written."
    tasks = [MVBenchTask('t_a', 't_a.json', 'va', 'video', False, 'Task A'), MVBenchTask('t_b', 't_b.json', 'vb', 'video', True, 'Task B')]
    write_task_table(root, tasks)
    rng = np.random.default_rng(0)
    (root / 'json').mkdir(parents=True, exist_ok=True)
    for t in tasks:
        rows = [dict(video=f'v{i}.mp4', question=f'What colour is object {i}?', candidates=['red', 'blue', 'green'], answer='blue')
                | (dict(start=0.5, end=2.0) if t.bound else {}) for i in range(2)]
        for i, r in enumerate(rows):
            if (t.name, i) not in missing: write_video(root / 'video' / t.prefix / r['video'], rng.integers(0, 255, FRAMES, dtype=np.uint8))
        (root / 'json' / t.json).write_text(json.dumps(rows + rows[:1] if duplicate else rows))
    return root


@pytest.fixture(scope='module')
def roots(tmp_path_factory):
    "A root with one missing video, a complete root, and a root whose first task file repeats an entry."
    d = tmp_path_factory.mktemp('mvb')
    return mvbench(d / 'gap', missing={('t_a', 1)}), mvbench(d / 'full'), mvbench(d / 'dup', duplicate=True)


@pytest.fixture(scope='module')
def finished(roots, tmp_path_factory):
    "An evaluation folder finished on the complete root at one level."
    out = tmp_path_factory.mktemp('finished') / 'eval'
    rc, stdout, err = run('dc_evaluate', '--out_dir', out, '--mvbench_root', roots[1], '--pool_levels', LEVEL, '--num_workers', 0)
    assert rc == 0 and '4/4 answered, 0 errors' in stdout, (rc, stdout, err)
    return out


def test_error_record_retried_after_the_video_is_fixed(roots, tmp_path):
    "A missing video gives an error record (counted as an error, not as answered); once the video is there, a re-run answers it."
    root, out = roots[0], tmp_path / 'eval'
    rc, stdout, err = run('dc_evaluate', '--out_dir', out, '--mvbench_root', root, '--pool_levels', LEVEL, '--num_workers', 0,
                          DC_VIDEO_BACKEND='av')                                  # the README's spelling of PyAV
    assert rc == 0 and not any('Traceback' in l for l in err), (rc, stdout, err)
    assert '4 new records; 3/4 answered, 1 error;' in stdout
    metrics = json.loads((out / 'metrics.json').read_text())
    assert (metrics['status'], metrics['complete'], metrics['present'], metrics['errors']) == ('3/4 answered, 1 error', False, 3, 1)
    assert [q for q, _ in metrics['failures']] == ['t_a/1'] and 'no such video file' in metrics['failures'][0][1]
    write_video(root / 'video' / 'va' / 'v1.mp4', np.random.default_rng(1).integers(0, 255, FRAMES, dtype=np.uint8))
    rc, stdout, err = run('dc_evaluate', '--out_dir', out, '--mvbench_root', root, '--pool_levels', LEVEL, '--num_workers', 0)
    assert rc == 0 and '1 new records; 4/4 answered, 0 errors;' in stdout, (rc, stdout, err)
    recs = [json.loads(l) for l in (out / 'records.jsonl').read_text().splitlines()]
    assert len(recs) == 4 and all(r['error'] is None for r in recs)
    fixed = next(r for r in recs if r['qid'] == 't_a/1')
    assert fixed['pred'] and fixed['option_probs'] is not None and len(fixed['option_probs']) == 3
    assert json.loads((out / 'metrics.json').read_text())['complete']


def test_unknown_video_backend_refused_before_any_work(roots, tmp_path):
    out = tmp_path / 'eval'
    line = refused('dc_evaluate', '--out_dir', out, '--mvbench_root', roots[1], '--pool_levels', LEVEL, DC_VIDEO_BACKEND='avv')
    assert line == "dc_evaluate: error: DC_VIDEO_BACKEND='avv' is not a video backend; use one of decord, pyav, av"
    assert not out.exists()
    line = refused('dc_eval_benchmark', '--mvbench_root', roots[1], '--pool_levels', LEVEL, DC_VIDEO_BACKEND='cv2')
    assert "DC_VIDEO_BACKEND='cv2' is not a video backend" in line


def test_finished_folder_refuses_other_settings(roots, finished):
    "Another model, protocol, MVBench root or answer cap: refused with one line naming the difference; more levels resume."
    base = ['--out_dir', finished, '--mvbench_root', roots[1], '--pool_levels', LEVEL, '--num_workers', 0]
    before = (finished / 'records.jsonl').read_bytes()
    for opt, value, says in (('--model', 'qwen2.5-1.5b', "model: 'tiny' there, 'qwen2.5-1.5b' now"),
                             ('--protocol', 'official', "protocol: 'seed' there, 'official' now"),
                             ('--mvbench_root', roots[2], f"mvbench_root: {str(roots[1].resolve())!r} there, {str(roots[2].resolve())!r} now"),
                             ('--max_new_tokens', 4, 'max_new_tokens: 8 there, 4 now')):
        args = [a for i, a in enumerate(base) if not (base[i - 1] == opt or a == opt)] + [opt, value]
        line = refused('dc_evaluate', *args)
        assert 'holds a model evaluation made with other settings' in line and says in line, line
    assert (finished / 'records.jsonl').read_bytes() == before
    rc, stdout, err = run('dc_evaluate', *base[:-4], '--pool_levels', f'{LEVEL},16', '--num_workers', 0)
    assert rc == 0 and '4 new records; 8/8 answered, 0 errors;' in stdout, (rc, stdout, err)
    assert json.loads((finished / 'eval_settings.json').read_text())['pool_levels'] == [int(LEVEL), 16]


@pytest.mark.parametrize('args, says', [
    (['--pool_levels', '4,4'], "pool levels '4,4': level 4 is given twice"),
    (['--pool_levels', ''], "no pool levels given ('')"),
    (['--pool_levels', 'abc'], "'abc' is not an integer"),
    (['--limit', -1], 'limit must be an integer >= 0, got -1'),
    (['--batch_size', 0], 'batch_size must be an integer >= 1, got 0'),
    (['--protocol', 'vlmeval'], "unknown protocol 'vlmeval'"),
    (['--model', 'no/such/model'], "model 'no/such/model' is neither a preset"),
])
def test_dc_evaluate_input_errors(roots, tmp_path, args, says):
    out = tmp_path / 'eval'
    line = refused('dc_evaluate', '--out_dir', out, '--mvbench_root', roots[1], *args)
    assert says in line, line
    assert not (out / 'records.jsonl').exists()


def test_unwritable_output_folder_refused_before_the_model_loads(roots, tmp_path):
    (tmp_path / 'file').write_text('not a folder')
    line = refused('dc_evaluate', '--out_dir', tmp_path / 'file' / 'eval', '--mvbench_root', roots[1], '--pool_levels', LEVEL)
    assert line.startswith(f"dc_evaluate: error: {tmp_path / 'file' / 'eval'}: output folder cannot be written"), line
    line = refused('dc_evaluate', '--out_dir', tmp_path / 'file', '--mvbench_root', roots[1], '--pool_levels', LEVEL)
    assert line.endswith('output folder is a file'), line


def test_dc_eval_benchmark_exit_status(roots, tmp_path):
    "Success is exit 0 (the result to --out); a duplicated question is warned about naming the file; bad counts are refused."
    res = tmp_path / 'bench.json'
    rc, stdout, err = run('dc_eval_benchmark', '--mvbench_root', roots[2], '--pool_levels', LEVEL, '--n_questions', 2,
                          '--batch_size', 2, '--seed_max_new_tokens', 8, '--out', res)
    assert rc == 0 and 'predictions identical' in stdout, (rc, stdout, err)
    assert json.loads(res.read_text())['answers'] == 2
    dup = [l for l in err if 'UserWarning' in l and 'duplicated question' in l]
    assert len(dup) == 2 and all('item 2 repeats item 0' in l for l in dup), err       # one warning per task file
    for task, line in zip(('t_a', 't_b'), dup): assert f"{roots[2] / 'json' / task}.json: 1 duplicated question(s)" in line
    assert 'n_questions must be an integer >= 1, got 0' in refused('dc_eval_benchmark', '--mvbench_root', roots[1], '--n_questions', 0)
    assert 'level 4 is given twice' in refused('dc_eval_benchmark', '--mvbench_root', roots[1], '--pool_levels', '4,4')


def test_dc_evaluate_under_torchrun_exits_0(roots, finished, tmp_path):
    "The README's sharded evaluation: `torchrun --nproc_per_node 2 $(which dc_evaluate) ...` ends with exit status 0 and the same records."
    out = tmp_path / 'eval'
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_port', '29541', str(BIN / 'dc_evaluate'),
           '--out_dir', str(out), '--mvbench_root', str(roots[1]), '--pool_levels', LEVEL, '--num_workers', '0']
    p = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0 and '4/4 answered, 0 errors' in p.stdout, (p.returncode, p.stdout[-2000:], p.stderr[-3000:])
    key = lambda r: (r['qid'], r['pool_level'], r['pred'])
    recs = lambda d: sorted(key(json.loads(l)) for l in (d / 'records.jsonl').read_text().splitlines())
    assert recs(out) == [k for k in recs(finished) if k[1] == int(LEVEL)]
