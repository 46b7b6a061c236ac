"""Tests for the in-code SD architecture presets and the offline CLIP tokenizer files."""
import json
import os.path as osp

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from madm.models.backbones.sd_presets import (CLIP_VOCAB_SIZE, clip_vocab_and_merges,
                                              get_preset, write_clip_tokenizer)


def test_sd14_parameter_counts_on_meta_device():
    cfg = get_preset('sd14')
    with torch.device('meta'):
        unet = UNet2DConditionModel(**cfg.unet)
        vae = AutoencoderKL(**cfg.vae)
    # SD-1.4: UNet 859,520,964 and VAE 83,653,863 parameters.
    assert sum(p.numel() for p in unet.parameters()) == 859_520_964
    assert sum(p.numel() for p in vae.parameters()) == 83_653_863
    assert cfg.vae['scaling_factor'] == pytest.approx(0.18215)
    assert cfg.clip_text_config().hidden_size == cfg.unet['cross_attention_dim'] == 768


def test_tiny_preset_has_sd_layout_and_matching_widths():
    cfg = get_preset('tiny')
    assert cfg.unet['up_block_types'] == get_preset('sd14').unet['up_block_types']
    assert cfg.unet['layers_per_block'] == 2  # 4 up blocks x 3 layers: taps 5/8/11 exist
    assert len(cfg.vae['block_out_channels']) == 4  # 8x VAE
    assert cfg.text_encoder['hidden_size'] == cfg.unet['cross_attention_dim']
    assert cfg.text_encoder['vocab_size'] == CLIP_VOCAB_SIZE
    assert cfg.scheduler == get_preset('sd14').scheduler


def test_unknown_preset_raises():
    with pytest.raises(ValueError, match='tiny'):
        get_preset('sd21')


def test_clip_tokenizer_rebuilt_from_mmseg_bpe(tmp_path):
    from transformers import CLIPTokenizer
    vocab, merges = clip_vocab_and_merges()
    assert len(vocab) == CLIP_VOCAB_SIZE and len(merges) == 48894
    assert vocab['<|startoftext|>'] == 49406 and vocab['<|endoftext|>'] == 49407
    write_clip_tokenizer(str(tmp_path))
    with open(osp.join(tmp_path, 'tokenizer_config.json')) as f:
        assert json.load(f)['model_max_length'] == 77
    tok = CLIPTokenizer.from_pretrained(str(tmp_path), local_files_only=True)
    assert len(tok) == CLIP_VOCAB_SIZE
    # Ids of the real CLIP tokenizer (also what mmseg.utils.tokenize returns).
    ids = tok('a photo of a cat', padding='max_length', max_length=10).input_ids
    assert ids == [49406, 320, 1125, 539, 320, 2368, 49407, 49407, 49407, 49407]
