"""The tiny demo is evaluated with exactly the prompt it is trained on: synthetic training samples and the
MVBench-layout evaluation (seed protocol) produce the same text up to where the answer starts."""
import torch
from dyncompress.config import get_geometry
from dyncompress.data.conversation import tokenize_conversation, tokenizer_image_token
from dyncompress.data.synthetic import make_synthetic
from dyncompress.config import load_json
from dyncompress.eval.scoring import build_prompt, question_text
from dyncompress.tokenizer import build_tiny_tokenizer


def test_train_and_eval_prompts_agree(tmp_path):
    make_synthetic(tmp_path, n_train=2, n_eval=2, seed=1, size=64, seconds=4, fps=2)
    train = load_json(tmp_path / "train.json")
    tok, g = build_tiny_tokenizer(), get_geometry("tiny")
    for s in train:
        human, answer = s["conversations"][0]["value"], s["conversations"][1]["value"]
        q_start = human.index("Question: ")
        q, opts = human[q_start:].split("\nOptions:\n")
        cands = [l[4:] for l in opts.split("\nOnly give the best option.")[0].split("\n")]
        assert human[q_start:] == question_text(q[len("Question: "):], cands, "seed")
        enc = tokenize_conversation(s["conversations"], tok, "qwen2_cap", "video", g.num_frames)
        prompt = build_prompt(q[len("Question: "):], cands, g.num_frames, "seed")
        p_ids = torch.as_tensor(tokenizer_image_token(prompt, tok))
        n = len(p_ids)
        assert torch.equal(enc["input_ids"][:n], p_ids), s["id"]                 # training prefix == eval prompt
        assert (enc["labels"][:n] == -100).all() and (enc["labels"][n:] != -100).any()
        assert tok.decode(enc["input_ids"][n:]).startswith(answer)
