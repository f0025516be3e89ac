"""Missing or damaged weights name the file (issue 11): real presets checked up front, damaged run folders, garbage checkpoints.

Every folder here is written in the real layout with tiny weights: a finetune run as `dc_train finetune` leaves it
(PEFT adapter, `non_lora_trainables.bin`, the model's `config.json`, the tokenizer, `train_config.json`), a
`save_pretrained` folder, and a weights root laid out as `<root>/<repo id>`.
"""
import json, shutil
from pathlib import Path
import pytest
import torch
from dyncompress.config import save_json
from dyncompress.model.loading import PRESETS, build_tiny, load_model, save_pretrained
from dyncompress.projectors import read_state_dict
from dyncompress.tokenizer import load_tokenizer

LLM_ONLY = r'^(?!video_tower\.|image_tower\.)(?:.*\.)?(?:q_proj|v_proj)$'


@pytest.fixture(autouse=True)
def _no_hf_cache(tmp_path, monkeypatch):
    "An empty Hugging Face cache, so a real cache on the machine cannot fill in the parts these tests leave out."
    import huggingface_hub.constants as c
    monkeypatch.setattr(c, 'HF_HUB_CACHE', str(tmp_path/'hf_cache'))


def _error(fn) -> BaseException:
    with pytest.raises(Exception) as ei: fn()
    return ei.value


def _cut(f: Path):
    f.write_bytes(f.read_bytes()[:f.stat().st_size // 2])


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory) -> Path:
    "A tiny finetune run folder in our layout."
    from peft import LoraConfig, get_peft_model
    d = tmp_path_factory.mktemp('runs')/'run'
    model, tok = build_tiny(11)
    pm = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=LLM_ONLY, task_type='CAUSAL_LM', init_lora_weights=False))
    pm.save_pretrained(d); tok.save_pretrained(d); model.config.save_pretrained(d)
    torch.save({f'base_model.model.model.{n}.{k}': v for n in ('mm_projector', 'image_mm_projector')
                for k, v in getattr(model, n).state_dict().items()}, d/'non_lora_trainables.bin')
    save_json({'stage': 'finetune', 'preset': 'tiny'}, d/'train_config.json')
    return d


def test_complete_run_loads(run_dir):
    model, tok = load_model(run_dir)
    assert type(model).__name__ == 'VideoQwen2ForCausalLM' and tok.eos_token == '<|im_end|>'


DAMAGES = {  # what is done to the run folder -> the start of what the error must say after the folder's path
    'missing adapter': (lambda r: (r/'adapter_model.safetensors').unlink(), 'adapter_model.safetensors: missing', FileNotFoundError),
    'missing non_lora_trainables.bin': (lambda r: (r/'non_lora_trainables.bin').unlink(), 'non_lora_trainables.bin: missing', FileNotFoundError),
    'truncated adapter': (lambda r: _cut(r/'adapter_model.safetensors'), 'adapter_model.safetensors: damaged', ValueError),
    'missing tokenizer.json': (lambda r: (r/'tokenizer.json').unlink(), 'tokenizer.json: missing', FileNotFoundError),
    'garbage non_lora_trainables.bin': (lambda r: (r/'non_lora_trainables.bin').write_bytes(b'\x00garbage' * 64),
                                        'non_lora_trainables.bin: not a checkpoint', ValueError),
}


@pytest.mark.parametrize('damage', sorted(DAMAGES))
def test_damaged_run_names_the_file(run_dir, tmp_path, damage):
    do, says, kind = DAMAGES[damage]
    r = tmp_path/'run'
    shutil.copytree(run_dir, r); do(r)
    e = _error(lambda: load_model(r))
    msg = str(e)
    assert isinstance(e, kind), (type(e), msg)
    assert msg.startswith(f"{r}/{says}"), msg
    for bad in ('Repo id must be in the form', 'no file named model.safetensors', 'sentencepiece', 'weights_only'):
        assert bad not in msg, msg


def test_damaged_run_lists_every_problem(run_dir, tmp_path):
    r = tmp_path/'run'
    shutil.copytree(run_dir, r)
    (r/'non_lora_trainables.bin').unlink(); _cut(r/'adapter_model.safetensors'); (r/'tokenizer.json').unlink()
    msg = str(_error(lambda: load_model(r)))
    for f in ('adapter_model.safetensors: damaged', 'non_lora_trainables.bin: missing', 'tokenizer.json: missing'):
        assert f"{r}/{f}" in msg, msg


def test_saved_model_without_weights(tmp_path):
    model, tok = build_tiny(0)
    save_pretrained(model, tok, tmp_path/'ours')
    (tmp_path/'ours/model.safetensors').unlink()
    e = _error(lambda: load_model(tmp_path/'ours'))
    assert isinstance(e, FileNotFoundError) and str(e).startswith(f"{tmp_path}/ours/model.safetensors: missing"), str(e)


def test_tokenizer_folder_names_the_file(tmp_path):
    _, tok = build_tiny(0)
    tok.save_pretrained(tmp_path)
    (tmp_path/'tokenizer.json').unlink()
    e = _error(lambda: load_tokenizer(tmp_path))
    assert isinstance(e, FileNotFoundError) and str(e).startswith(f"{tmp_path}/tokenizer.json: missing"), str(e)


@pytest.mark.parametrize('content,says', [(bytes(range(256)) * 3, 'not a checkpoint (768 bytes'), (b'', 'not a checkpoint (0 bytes'),
                                          (None, 'damaged checkpoint')])
def test_garbage_projector_file(tmp_path, content, says):
    f = tmp_path/'mm_projector.bin'
    if content is None: torch.save({'model.mm_projector.0.weight': torch.zeros(4, 4)}, f); _cut(f)
    else: f.write_bytes(content)
    for fn in (lambda: read_state_dict(f), lambda: load_model('tiny', projectors=f)):
        e = _error(fn)
        assert isinstance(e, ValueError) and str(e).startswith(f"{f}: {says}"), str(e)
        assert 'weights_only' not in str(e)


def test_projector_with_python_objects_says_so(tmp_path):
    import argparse
    f = tmp_path/'p.bin'
    torch.save({'model.mm_projector.0.weight': torch.zeros(2, 2), 'args': argparse.Namespace(a=1)}, f)
    msg = str(_error(lambda: read_state_dict(f)))
    assert msg.startswith(f"{f}: the checkpoint holds Python objects") and 'argparse.Namespace' in msg, msg


@pytest.mark.parametrize('preset', ['qwen2.5-1.5b', 'qwen2.5-3b'])
def test_missing_real_weights_listed_at_once(tmp_path, preset):
    "A root whose LLM folder holds only config.json: one error lists every missing file of every part, with a command each."
    p = PRESETS[preset]
    llm = tmp_path/p.llm
    llm.mkdir(parents=True); (llm/'config.json').write_text('{}')
    e = _error(lambda: load_model(preset, root=tmp_path, download=False))
    msg = str(e)
    assert isinstance(e, FileNotFoundError), msg
    expected = [llm/'tokenizer.json', llm/'tokenizer_config.json', llm/'model.safetensors', tmp_path/p.clip/'config.json',
                tmp_path/p.clip/'model.safetensors', tmp_path/p.internvideo2/p.internvideo2_file,
                *[tmp_path/p.projectors/f for f in p.projector_files]]
    for f in expected: assert f"{f}: missing" in msg, (f, msg)
    assert f"{llm/'config.json'}: missing" not in msg
    for repo in (p.llm, p.clip, p.internvideo2, p.projectors):
        assert f"hf download {repo} " in msg and f"--local-dir {tmp_path/repo}" in msg, (repo, msg)


def test_real_weights_partial_llm_shards(tmp_path):
    "A sharded LLM folder missing one shard names that shard."
    from safetensors.torch import save_file
    p = PRESETS['qwen2.5-3b']
    llm = tmp_path/p.llm
    llm.mkdir(parents=True)
    for f in ('config.json', 'tokenizer.json', 'tokenizer_config.json'): (llm/f).write_text('{}')
    save_file({'w': torch.zeros(2)}, llm/'model-00001-of-00002.safetensors')
    (llm/'model.safetensors.index.json').write_text(json.dumps(
        {'weight_map': {'a': 'model-00001-of-00002.safetensors', 'b': 'model-00002-of-00002.safetensors'}}))
    msg = str(_error(lambda: load_model('qwen2.5-3b', root=tmp_path, download=False)))
    assert f"{llm/'model-00002-of-00002.safetensors'}: missing" in msg, msg
    assert f"{llm/'model-00001-of-00002.safetensors'}" not in msg and f"{llm/'tokenizer.json'}" not in msg
