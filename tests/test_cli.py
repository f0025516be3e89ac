"""Every console script, run as the installed command (subprocess): exit status 0 on success, and a wrong input
gives status 2 and one stderr line, `<cmd>: error: <message>`, naming the problem and the file or argument (issue
11). Tiny sizes throughout: the file runs in about a minute on 2 cores. (dc_evaluate and dc_eval_benchmark are
tested with the evaluation, tests/test_eval.py.)"""
import json, os, shutil, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {k: v for k, v in os.environ.items() if k != 'DC_DEBUG'}
ENV.update(OMP_NUM_THREADS='1', TOKENIZERS_PARALLELISM='false', PYTHONWARNINGS='ignore')


def cli(cmd, *args, cwd=ROOT, timeout=300):
    return subprocess.run([str(BIN/cmd), *map(str, args)], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


def ok(cmd, *args, **kw):
    r = cli(cmd, *args, **kw)
    assert r.returncode == 0, f"{cmd} {args}: status {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    return r


def refused(cmd, *args, says, prog=None, **kw):
    "Status 2 and exactly one stderr line, `<prog>: error: ...`, containing each string of `says`."
    r = cli(cmd, *args, **kw)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, f"{cmd} {args}: status {r.returncode}, stderr:\n{r.stderr[-4000:]}"
    assert lines[0].startswith(f"{prog or cmd}: error: "), lines[0]
    for s in [says] if isinstance(says, str) else says: assert s in lines[0], (s, lines[0])
    return r


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    "A small synthetic set, made by the command (its success case): 2 training clips per task, 1 to evaluate."
    d = tmp_path_factory.mktemp('cli')/'data'
    ok('dc_make_synthetic', '--out_dir', d, '--n_train', 2, '--n_eval', 1)
    return d


def test_make_synthetic(data, tmp_path):
    man = json.loads((data/'synthetic.json').read_text())
    assert (man['train'], man['eval']) == (12, 6)
    refused('dc_make_synthetic', '--out_dir', tmp_path/'x', '--n_train', -1, says='n_train must be >= 0, got -1')
    refused('dc_make_synthetic', '--out_dir', tmp_path/'x', '--option_order', 'abc', says='option_order must be one of')
    assert not (tmp_path/'x').exists()


def test_validate_data(data, tmp_path):
    train = data/'train.json'
    assert 'no problems' in ok('dc_validate_data', train).stdout
    copy = data/'train_copy.json'                          # same folder: same media
    shutil.copy(train, copy)
    assert 'no problems' in ok('dc_validate_data', f"{train},{copy}").stdout          # both files, as --help says
    entries = json.loads(train.read_text())
    bad = data/'bad.json'
    bad.write_text(json.dumps([entries[0], {**entries[1], 'video': 'train/none.mp4'}]))
    r = refused('dc_validate_data', f"{train},{bad}", says=['1 problem(s) in', 'bad.json entry 1', 'none.mp4'])
    assert r.stdout.count('no such video file') == 1                                  # only the bad file's entry
    refused('dc_validate_data', 'NOPE', '--root', data, says="unknown dataset 'NOPE'")


def _train(data, out, *args):
    return ('finetune', '--data_root', data, '--output_dir', out, *args)


def test_train_refuses_another_run_folder(data, tmp_path):
    "A finished pool-4 run, then pool 8 (or more steps) into its folder: refused, nothing rewritten; the same run is accepted."
    out = tmp_path/'run'
    opts = lambda save: json.dumps({'per_device_train_batch_size': 2, 'save_steps': save, 'logging_steps': 1})
    ok('dc_train', *_train(data, out, '--pool_level', 4, '--max_steps', 2, '--opts', opts(1)))
    files = ('adapter_model.safetensors', 'non_lora_trainables.bin', 'config.json', 'train_config.json', 'metrics.json', 'run_settings.json')
    before = {f: (out/f).read_bytes() for f in files}
    assert json.loads(before['config.json'])['pool_level'] == 4
    refused('dc_train', *_train(data, out, '--pool_level', 8, '--max_steps', 3, '--opts', opts(1)),   # each difference named
            says=[str(out), 'max_steps: 2 there, 3 now; pool_level: 4 there, 8 now'])
    assert {f: (out/f).read_bytes() for f in files} == before            # adapter, config.json, metrics: untouched
    # the same run (a checkpoint interval may change) is accepted; finished, it is left as it is
    r = ok('dc_train', *_train(data, out, '--pool_level', 4, '--max_steps', 2, '--opts', opts(5)))
    assert 'already finished' in r.stdout and {f: (out/f).read_bytes() for f in files} == before


# (more of dc_train's input errors -- `--pool_levels abc`, a bad `--opts` -- are checked in nbs/31_launch.ipynb through
# `cli.run_command`, the same code path without the cost of a process start each)
@pytest.mark.parametrize('args,says', [
    (('--pool_level', -1), 'pool level must be >= 1, got -1'),
    (('--dataset', 'NOPE'), "unknown dataset 'NOPE'"),
], ids=['negative-level', 'dataset-name'])
def test_train_input_errors(data, tmp_path, args, says):
    refused('dc_train', *_train(data, tmp_path/'run', *args), says=says)
    assert not (tmp_path/'run').exists()                                  # refused before anything was written


def test_launch_module_is_dc_train(data, tmp_path):
    "`python -m dyncompress.launch` (what torchrun starts) is dc_train, with its exit status."
    r = subprocess.run([sys.executable, '-m', 'dyncompress.launch', *map(str, _train(data, tmp_path/'run', '--pool_level', 0))],
                       cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and 'error: pool level must be >= 1, got 0' in lines[0], r.stderr[-3000:]


def test_train_benchmark(tmp_path):
    "(Its success, exit 0 and the table, is tests/test_features.py::test_console_dc_train_benchmark.)"
    refused('dc_train_benchmark', '--pool_levels', 'abc', '--out_dir', tmp_path/'x', says="'abc' is not an integer")
    assert not (tmp_path/'x').exists()


@pytest.fixture(scope='module')
def evals(tmp_path_factory):
    "A sweep's eval folder: one model per level (pool2/, pool4/) beside a multi-level model (multi/, both levels)."
    from dyncompress.testing import write_records
    d = tmp_path_factory.mktemp('cli')/'eval'
    right = {2: '11101101', 4: '10100100'}                 # questions right at each level
    rows = lambda b: [dict(qid=f"T{i % 2}/{i}", pool_level=b, correct=c == '1', confidence=0.9 if c == '1' else 0.4)
                      for i, c in enumerate(right[b])]
    for b in right: write_records(rows(b), d/f'pool{b}'/'records.jsonl')
    write_records(rows(2) + rows(4), d/'multi'/'records.jsonl')
    return d


def test_token_aware(evals, tmp_path):
    r = ok('dc_token_aware', '--output', tmp_path/'subset.json', '--records', evals/'multi')
    assert json.loads((tmp_path/'subset.json').read_text())['levels'] == [2, 4] and 'saved to' in r.stdout
    refused('dc_token_aware', '--records', evals/'multi', says='--output is required')
    refused('dc_token_aware', '--output', tmp_path/'o.json', '--runs', f"x={evals/'pool2'}", says="'x' is not a pool level")


def test_report(evals, tmp_path):
    # the sweep's eval folder holds levels twice: the message names the files and a form this command accepts ...
    refused('dc_report', evals, '--out_dir', tmp_path/'r', says=['dc_report 2=PATH 4=PATH', str(evals/'multi'/'records.jsonl')])
    assert not (tmp_path/'r').exists()
    # ... which works
    r = ok('dc_report', f"2={evals/'pool2'}", f"4={evals/'pool4'}", '--out_dir', tmp_path/'r')
    assert (tmp_path/'r'/'report.md').exists() and r.stdout.strip().endswith('report.md')
    refused('dc_report', evals/'multi', '--out_dir', tmp_path/'x', '--preset', 'bogus', says="unknown --preset 'bogus'")


def _notebook(path, cells):
    nb = {'cells': [{'cell_type': kind, 'id': f'c{i}', 'metadata': {}, 'source': src,
                     **({'execution_count': 1, 'outputs': [{'output_type': 'stream', 'name': 'stdout', 'text': ['ok\n']}]}
                        if kind == 'code' else {})} for i, (kind, src) in enumerate(cells)],   # a saved output: dc_check asks for one
          'metadata': {'kernelspec': {'display_name': 'python3', 'language': 'python', 'name': 'python3'}},
          'nbformat': 4, 'nbformat_minor': 5}
    path.write_text(json.dumps(nb))


def _commit(repo, msg):
    git = ['git', '-c', 'user.email=t@example.com', '-c', 'user.name=t']
    for cmd in (['add', '-A'], ['commit', '-qm', msg]): subprocess.run(git + cmd, cwd=repo, check=True, capture_output=True)


def test_check_and_readme(tmp_path):
    "dc_readme and dc_check in a small nbdev repository of their own (not this one: dc_check runs the whole suite)."
    repo = tmp_path/'repo'
    (repo/'nbs').mkdir(parents=True)
    ini = (ROOT/'settings.ini').read_text().replace('lib_name = dyncompress', 'lib_name = fakelib') \
        .replace('lib_path = dyncompress', 'lib_path = fakelib').replace('update_pyproject = True', 'update_pyproject = False')
    (repo/'settings.ini').write_text(ini)
    _notebook(repo/'nbs'/'00_ok.ipynb', [('code', 'assert 1 + 1 == 2')])
    _notebook(repo/'nbs'/'index.ipynb', [('markdown', '# Fake\n\nA small repository.')])
    ok('dc_readme', cwd=repo)
    assert 'A small repository.' in (repo/'README.md').read_text()
    ok('dc_readme', '--check', cwd=repo)
    ok('nbdev_clean', cwd=repo); ok('nbdev_export', cwd=repo)
    subprocess.run(['git', 'init', '-q'], cwd=repo, check=True)
    _commit(repo, 'fake')
    r = ok('dc_check', '--n_workers', 1, cwd=repo)
    assert r.stdout.strip().splitlines()[-1] == '8 passed, 0 failed', r.stdout
    _notebook(repo/'nbs'/'01_bad.ipynb', [('code', 'assert 1 + 1 == 3')])
    ok('nbdev_clean', cwd=repo)
    _commit(repo, 'a failing notebook')
    r = cli('dc_check', '--n_workers', 1, cwd=repo)
    assert r.returncode == 1 and 'FAIL  notebook nbs/01_bad.ipynb' in r.stdout and r.stdout.strip().endswith('1 failed'), r.stdout
    for cmd in ('dc_check', 'dc_readme'):
        refused(cmd, cwd=tmp_path, says=[str(tmp_path), 'not inside the repository'])
