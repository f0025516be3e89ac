"Data pipeline under the HF Trainer: synthetic set → VideoInstructDataset → DataCollator, 2 dataloader workers."
import os
os.environ.setdefault('OMP_NUM_THREADS', '1')
import torch
from torch import nn
from transformers import Trainer, TrainingArguments
from dyncompress.config import get_geometry, IMAGE_TOKEN_INDEX
from dyncompress.tokenizer import build_tiny_tokenizer
from dyncompress.data.synthetic import make_synthetic
from dyncompress.data.datasets import VideoInstructDataset, DataCollator, resolve_datasets


class BatchProbe(nn.Module):
    "Stands in for the model: checks the batch contract and returns a differentiable loss."
    def __init__(self, geom):
        super().__init__()
        self.geom, self.w, self.seen = geom, nn.Parameter(torch.zeros(())), []

    def forward(self, input_ids, attention_mask=None, labels=None, videos=None, context_images=None, images=None):
        g = self.geom
        assert videos is not None and videos.shape[1:] == (g.num_frames, 3, g.video_size, g.video_size)
        assert context_images.shape[1:] == (g.num_context_images, 3, g.image_size, g.image_size)
        assert ((input_ids == IMAGE_TOKEN_INDEX).sum(1) == g.num_frames).all()
        assert input_ids.shape == labels.shape == attention_mask.shape
        self.seen.append(input_ids.shape[0])
        return {'loss': (self.w - videos.mean()) ** 2}


def test_trainer_with_workers(tmp_path):
    geom = get_geometry('tiny')
    root = tmp_path / 'syn'
    make_synthetic(root, n_train=4, n_eval=0, tasks=['direction', 'small_color'])
    tok = build_tiny_tokenizer()
    ds = VideoInstructDataset(resolve_datasets('SYNTHETIC', root), tok, geom)
    assert len(ds) == 8
    model = BatchProbe(geom)
    args = TrainingArguments(output_dir=str(tmp_path / 'out'), per_device_train_batch_size=4, max_steps=2,
                             dataloader_num_workers=2, use_cpu=True, report_to='none', save_strategy='no',
                             logging_steps=1, disable_tqdm=True)   # remove_unused_columns stays at its default (True)
    Trainer(model=model, args=args, train_dataset=ds, data_collator=DataCollator(tok.pad_token_id)).train()
    assert model.seen == [4, 4]
