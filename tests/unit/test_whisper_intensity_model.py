"""The multi-task model: masked pooling, the combined loss, and save/load of the head and its scale."""

from __future__ import annotations

import torch
from transformers import WhisperConfig

from steps.models.whisper.decoding import DecodingSpec, greedy_decode
from steps.tasks.whisper_intensity.model import WhisperForASRAndIntensity, encoder_frame_mask, masked_mean


def _tiny() -> WhisperForASRAndIntensity:
    torch.manual_seed(0)
    config = WhisperConfig(vocab_size=60, num_mel_bins=80, d_model=32, encoder_layers=1, decoder_layers=1,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                           decoder_ffn_dim=64, max_source_positions=50, max_target_positions=16,
                           decoder_start_token_id=1, pad_token_id=0, eos_token_id=0, bos_token_id=0)
    config.intensity_mean, config.intensity_std, config.lambda_intensity = -30.0, 5.0, 2.0
    return WhisperForASRAndIntensity(config).eval()


def test_padded_frames_do_not_change_the_pool():
    hidden = torch.randn(1, 6, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0]], dtype=torch.float32)
    changed = hidden.clone()
    changed[:, 3:] = 100.0
    assert torch.allclose(masked_mean(hidden, mask), masked_mean(changed, mask))
    assert torch.allclose(masked_mean(hidden, mask), hidden[:, :3].mean(1))
    frames = encoder_frame_mask(torch.tensor([[1, 1, 1, 1, 0, 0, 0, 0]]), 4)
    assert frames.tolist() == [[1, 1, 0, 0]]


def test_loss_is_ce_plus_lambda_mse():
    model = _tiny()
    feats = torch.randn(2, 80, 100)
    mask = torch.ones(2, 100, dtype=torch.long)
    labels = torch.tensor([[5, 6, 0], [7, 0, -100]])
    target = torch.tensor([-25.0, -35.0])
    out = model(input_features=feats, labels=labels, intensity_labels=target, feature_mask=mask)
    standardised = (out.intensity - -30.0) / 5.0
    mse = torch.mean((standardised - (target + 30.0) / 5.0) ** 2)
    assert torch.allclose(out.intensity_loss, mse, atol=1e-5)
    assert torch.allclose(out.loss, out.asr_loss + 2.0 * mse, atol=1e-5)


def test_save_and_reload_keep_head_and_scale(tmp_path):
    model = _tiny()
    model.save_pretrained(tmp_path)
    again = WhisperForASRAndIntensity.from_pretrained(tmp_path).eval()
    feats = torch.randn(1, 80, 100)
    mask = torch.ones(1, 100, dtype=torch.long)
    with torch.no_grad():
        a = model(input_features=feats, feature_mask=mask, decoder_input_ids=torch.tensor([[1]])).intensity
        b = again(input_features=feats, feature_mask=mask, decoder_input_ids=torch.tensor([[1]])).intensity
    assert torch.allclose(a, b) and again.config.intensity_std == 5.0


def test_greedy_decode_stops_at_eos_and_suppresses():
    # a fake step that prefers token 9 (suppressed), then 4, then EOS
    def step(ids, _):
        logits = torch.zeros(ids.shape[0], 10)
        logits[:, 9] = 10
        logits[:, 4 if ids.shape[1] < 4 else 0] = 5
        return logits.numpy()

    out = greedy_decode(step, torch.zeros(2, 3, 1), DecodingSpec(prefix=(1, 2), eos=0, suppress=(9,), max_new_tokens=8))
    assert out == [[4, 4], [4, 4]]


def test_band_levels_keep_the_absolute_level_that_layer_norm_removes():
    from transformers import WhisperFeatureExtractor

    from steps.models.whisper.features import WhisperFeatures
    from steps.tasks.whisper_intensity.model import band_levels
    from tests.conftest import tone

    features = WhisperFeatures(WhisperFeatureExtractor(chunk_length=2))
    quiet, loud = tone(1.0, dbfs=-40.0), tone(1.0, dbfs=-20.0)  # the same signal, 20 dB apart
    batch = features([quiet, loud])
    levels = band_levels(batch["input_features"], batch["feature_mask"])
    speech_bands = levels[1] > levels[1].max() - 3  # bands within 30 dB of the loudest
    assert torch.allclose((levels[1] - levels[0])[speech_bands], torch.tensor(2.0), atol=0.05), "20 dB = 2 decades"
    padded = features([quiet, tone(1.8, dbfs=-30.0)])  # padding frames are not averaged in
    assert torch.allclose(band_levels(padded["input_features"], padded["feature_mask"])[0][speech_bands],
                          levels[0][speech_bands], atol=0.05)


def test_the_level_path_starts_at_a_ridge_fit_and_survives_save_and_load(tmp_path):
    from steps.tasks.whisper_intensity.model import IntensityHead, fit_level_path

    model = _tiny()
    model.intensity_head = IntensityHead(32, level_bands=80)
    model.config.intensity_level_bands = 80
    torch.manual_seed(1)
    feats = torch.rand(16, 80, 100) * 0.5
    mask = torch.ones(16, 100, dtype=torch.long)
    from steps.tasks.whisper_intensity.model import band_levels

    levels = band_levels(feats, mask)
    targets = -30.0 + 10.0 * levels[:, :10].mean(1)  # a level the band powers determine
    rmse = fit_level_path(model, levels, targets, ridge=1e-6)
    assert rmse < 0.05
    with torch.no_grad():
        out = model(input_features=feats, feature_mask=mask, decoder_input_ids=torch.ones(16, 1, dtype=torch.long))
    assert torch.allclose(out.intensity, targets, atol=0.1), "the encoder path starts at zero"
    model.save_pretrained(tmp_path)
    again = WhisperForASRAndIntensity.from_pretrained(tmp_path).eval()
    assert again.needs_levels
    with torch.no_grad():
        back = again(input_features=feats, feature_mask=mask, decoder_input_ids=torch.ones(16, 1, dtype=torch.long))
    assert torch.allclose(back.intensity, out.intensity, atol=1e-4)


def test_encoder_interpolation_mixes_fine_tuned_and_starting_weights():
    from steps.tasks.whisper_intensity.train import interpolate

    model = _tiny()
    encoder = model.model.encoder
    start = {k: v.clone() for k, v in encoder.state_dict().items()}
    with torch.no_grad():
        for p in encoder.parameters():
            p.add_(1.0)  # "fine-tuning" moved every weight by +1
    interpolate(encoder, start, 0.7)
    for name, tensor in encoder.state_dict().items():
        assert torch.allclose(tensor, start[name] + 0.7, atol=1e-5), name
