"""torchaudio's model zoo at small sizes (``-m corpus``).

Each architecture the zoo offers (wav2vec 2.0, HuBERT, WavLM, Conformer,
Emformer, Conv-TasNet, WaveRNN, Tacotron2, Hybrid Demucs, Emformer RNN-T,
DeepSpeech, Wav2Letter) is built through torchaudio's own factory with
random weights and a few small layers, captured, checked module by module
against forward hooks, and validated.
"""

import pytest
import torch

import torchlens_like as tll
from groundtruth import assert_capture_matches_hooks, assert_lean_pass_matches

torchaudio = pytest.importorskip("torchaudio")
models = torchaudio.models

pytestmark = pytest.mark.corpus

_CONV = [(8, 10, 5), (8, 3, 2)]
_ENCODER = dict(extractor_conv_layer_config=_CONV, extractor_conv_bias=False,
                encoder_embed_dim=16, encoder_projection_dropout=0.1, encoder_pos_conv_kernel=8,
                encoder_pos_conv_groups=4, encoder_num_layers=2, encoder_num_heads=2,
                encoder_attention_dropout=0.1, encoder_ff_interm_features=32,
                encoder_ff_interm_dropout=0.1, encoder_dropout=0.1, encoder_layer_drop=0.0)


def _wave():
    return (torch.randn(2, 800), torch.tensor([800, 640]))


def _wav2vec2():
    return (models.wav2vec2_model("group_norm", **_ENCODER, encoder_layer_norm_first=False,
                                  aux_num_out=5), _wave(), {})


def _hubert():
    return (models.wav2vec2_model("layer_norm", **_ENCODER, encoder_layer_norm_first=True,
                                  aux_num_out=None), (torch.randn(2, 800),), {})


def _wavlm():
    return (models.wavlm_model("layer_norm", **_ENCODER, encoder_num_buckets=8,
                               encoder_max_distance=16, encoder_layer_norm_first=True,
                               aux_num_out=None), (torch.randn(2, 800),), {})


def _conformer():
    model = models.Conformer(input_dim=16, num_heads=2, ffn_dim=32, num_layers=2,
                             depthwise_conv_kernel_size=3)
    return model, (torch.randn(2, 10, 16), torch.tensor([10, 7])), {}


def _emformer():
    model = models.Emformer(input_dim=16, num_heads=2, ffn_dim=32, num_layers=2,
                            segment_length=4, right_context_length=1, left_context_length=4,
                            max_memory_size=2)
    return model, (torch.randn(2, 13, 16), torch.tensor([12, 9])), {}


def _conv_tasnet():
    model = models.ConvTasNet(num_sources=2, enc_kernel_size=8, enc_num_feats=16,
                              msk_kernel_size=3, msk_num_feats=8, msk_num_hidden_feats=16,
                              msk_num_layers=2, msk_num_stacks=2)
    return model, (torch.randn(2, 1, 200),), {}


def _wavernn():
    model = models.WaveRNN(upsample_scales=[2, 2], n_classes=16, hop_length=4, n_res_block=1,
                           n_rnn=16, n_fc=16, kernel_size=3, n_freq=8, n_hidden=8, n_output=8)
    n_time = 6
    return model, (torch.rand(2, 1, (n_time - 2) * 4) * 2 - 1, torch.randn(2, 1, 8, n_time)), {}


def _tacotron2():
    model = models.Tacotron2(n_mels=8, n_symbol=20, symbol_embedding_dim=16,
                             encoder_embedding_dim=16, encoder_n_convolution=1,
                             decoder_rnn_dim=16, attention_rnn_dim=16, attention_hidden_dim=8,
                             attention_location_n_filter=4, attention_location_kernel_size=3,
                             prenet_dim=8, postnet_n_convolution=2, postnet_embedding_dim=8)
    tokens = torch.randint(1, 20, (2, 7))
    inputs = (tokens, torch.tensor([7, 5]), torch.randn(2, 8, 6), torch.tensor([6, 4]))
    return model, inputs, {}


def _hdemucs():
    model = models.HDemucs(sources=["voice", "rest"], channels=8, nfft=64, depth=2,
                           dconv_attn=4, dconv_lstm=4)
    return model, (torch.randn(1, 2, 512),), {}


def _rnnt():
    model = models.emformer_rnnt_model(
        input_dim=8, encoding_dim=16, num_symbols=12, segment_length=4, right_context_length=1,
        time_reduction_input_dim=16, time_reduction_stride=2, transformer_num_heads=2,
        transformer_ffn_dim=32, transformer_num_layers=2, transformer_dropout=0.1,
        transformer_activation="gelu", transformer_left_context_length=4,
        transformer_max_memory_size=0, transformer_weight_init_scale_strategy="depthwise",
        transformer_tanh_on_mem=True, symbol_embedding_dim=16, num_lstm_layers=1,
        lstm_layer_norm=True, lstm_layer_norm_epsilon=1e-5, lstm_dropout=0.1)
    inputs = (torch.randn(2, 18, 8), torch.tensor([18, 14]), torch.randint(0, 12, (2, 5)),
              torch.tensor([5, 3]))
    return model, inputs, {}


def _deepspeech():
    return models.DeepSpeech(n_feature=8, n_hidden=16, n_class=10), \
        (torch.randn(2, 1, 12, 8),), {}


def _wav2letter():
    return models.Wav2Letter(num_classes=10, input_type="mfcc", num_features=8), \
        (torch.randn(2, 8, 40),), {}


AUDIO = {build.__name__.lstrip("_"): build for build in (
    _wav2vec2, _hubert, _wavlm, _conformer, _emformer, _conv_tasnet, _wavernn, _tacotron2,
    _hdemucs, _rnnt, _deepspeech, _wav2letter)}


@pytest.mark.parametrize("name", sorted(AUDIO))
def test_torchaudio(name):
    torch.manual_seed(0)
    model, args, kwargs = AUDIO[name]()
    model.eval()
    with torch.no_grad():
        history = assert_capture_matches_hooks(model, args, kwargs, seed=0)
        assert history.validate(verbose=True)
        assert_lean_pass_matches(model, args, kwargs, history, seed=0)
        assert tll.validate_saved_activations(model, args, kwargs, random_seed=0, verbose=True)
