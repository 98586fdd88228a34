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
