"""Hugging Face ``transformers`` models from small random configs (``-m corpus``).

One model per family researchers use: encoders (BERT, RoBERTa), decoder-only
models (GPT-2, Llama), encoder-decoders (T5, BART), vision (ViT, Swin), audio
(wav2vec 2.0, Whisper) and CLIP. Each is built from a config with two tiny
layers and random weights; text models get ``input_ids`` and
``attention_mask`` as keyword arguments, as users call them; one model runs in
training mode, so its attention and hidden dropout draw random numbers. Every
module call is checked against a forward hook, then the history is validated.
"""

import pytest
import torch

import torchlens_like as tll
from groundtruth import assert_capture_matches_hooks, assert_lean_pass_matches

transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.corpus

SMALL = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)
VOCAB = 64


def _text(batch=2, length=7):
    ids = torch.randint(3, VOCAB, (batch, length))
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[1, -2:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def _bert():
    config = transformers.BertConfig(vocab_size=VOCAB, max_position_embeddings=32, **SMALL)
    return transformers.BertModel(config), _text(), False


def _bert_train():
    config = transformers.BertConfig(vocab_size=VOCAB, max_position_embeddings=32,
                                     hidden_dropout_prob=0.2,
                                     attention_probs_dropout_prob=0.2, **SMALL)
    return transformers.BertForMaskedLM(config), _text(), True


def _roberta():
    config = transformers.RobertaConfig(vocab_size=VOCAB, max_position_embeddings=34, **SMALL)
    return transformers.RobertaModel(config), _text(), False


def _gpt2():
    config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=32, n_embd=16, n_layer=2,
                                     n_head=2)
    return transformers.GPT2LMHeadModel(config), _text(), False


def _llama():
    config = transformers.LlamaConfig(vocab_size=VOCAB, max_position_embeddings=32,
                                      num_key_value_heads=1, **SMALL)
    return transformers.LlamaForCausalLM(config), _text(), False


def _t5():
    config = transformers.T5Config(vocab_size=VOCAB, d_model=16, d_kv=8, d_ff=32, num_layers=2,
                                   num_heads=2, decoder_start_token_id=0)
    inputs = {**_text(), "decoder_input_ids": torch.randint(3, VOCAB, (2, 4))}
    return transformers.T5ForConditionalGeneration(config), inputs, False


def _bart():
    config = transformers.BartConfig(vocab_size=VOCAB, d_model=16, encoder_layers=2,
                                     decoder_layers=2, encoder_attention_heads=2,
                                     decoder_attention_heads=2, encoder_ffn_dim=32,
                                     decoder_ffn_dim=32, max_position_embeddings=32)
    return transformers.BartModel(config), _text(), False


def _vit():
    config = transformers.ViTConfig(image_size=32, patch_size=8, num_channels=3, **SMALL)
    return transformers.ViTModel(config), {"pixel_values": torch.rand(2, 3, 32, 32)}, False


def _swin():
    config = transformers.SwinConfig(image_size=32, patch_size=4, embed_dim=8, depths=[1, 1],
                                     num_heads=[2, 2], window_size=4)
    return transformers.SwinModel(config), {"pixel_values": torch.rand(2, 3, 32, 32)}, False


def _wav2vec2():
    config = transformers.Wav2Vec2Config(conv_dim=(8, 8), conv_stride=(5, 2), conv_kernel=(10, 3),
                                         num_conv_pos_embeddings=8,
                                         num_conv_pos_embedding_groups=2, **SMALL)
    return transformers.Wav2Vec2Model(config), {"input_values": torch.randn(2, 400)}, False


def _whisper():
    config = transformers.WhisperConfig(vocab_size=VOCAB, pad_token_id=1, bos_token_id=1,
                                        eos_token_id=2, decoder_start_token_id=1,
                                        num_mel_bins=8, d_model=16,
                                        encoder_layers=2, decoder_layers=2,
                                        encoder_attention_heads=2, decoder_attention_heads=2,
                                        encoder_ffn_dim=32, decoder_ffn_dim=32,
                                        max_source_positions=10, max_target_positions=16)
    inputs = {"input_features": torch.randn(2, 8, 20),
              "decoder_input_ids": torch.randint(3, VOCAB, (2, 4))}
    return transformers.WhisperModel(config), inputs, False


def _clip():
    config = transformers.CLIPConfig(
        text_config=dict(vocab_size=VOCAB, max_position_embeddings=16, **SMALL),
        vision_config=dict(image_size=32, patch_size=8, **SMALL), projection_dim=8)
    inputs = {**_text(), "pixel_values": torch.rand(2, 3, 32, 32)}
    return transformers.CLIPModel(config), inputs, False


TRANSFORMERS = {build.__name__.lstrip("_"): build for build in (
    _bert, _bert_train, _roberta, _gpt2, _llama, _t5, _bart, _vit, _swin, _wav2vec2, _whisper,
    _clip)}


@pytest.mark.parametrize("name", sorted(TRANSFORMERS))
def test_transformers(name):
    torch.manual_seed(0)
    model, kwargs, train = TRANSFORMERS[name]()
    model.train(train)
    with torch.no_grad():
        history = assert_capture_matches_hooks(model, (), kwargs, seed=0)
        assert history.validate(verbose=True)
        assert_lean_pass_matches(model, (), kwargs, history, seed=0)
        assert tll.validate_saved_activations(model, (), kwargs, random_seed=0, verbose=True)
