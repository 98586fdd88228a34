"""One speech encoder (Whisper's by default, ``backbone.py``), three heads: emotion (the main task), CTC over SentencePiece pieces, word emphasis.

``loss = alpha_ser * L_SER + alpha_asr * L_ASR + alpha_prosody * L_Prosody`` over the heads switched on
(``use_ser``/``use_asr``/``use_prosody``); a head that is off is neither computed nor trained.

* **Emotion**: the encoder's states over the clip's real frames, pooled three ways (mean, standard
  deviation, and a learned attention), then a small MLP. Emotion lives in how the voice moves (pitch range,
  tempo, energy), so the spread of the states matters as much as their mean.
* **CTC**: per encoder frame (20 ms), a linear layer over the pieces, or with ``ctc_hidden_dim`` a one-hidden-
  layer MLP (the default profile's: on Whisper tiny.en's encoder a linear head trains too slowly while the
  emotion loss reshapes the states it reads, see the README), blank id 4, with the seed's regularisers
  against blank collapse (see ``ctc_loss``).
* **Emphasis, one label per word**, by *located attention pooling*: the manifest gives words, not their
  times. Each word asks a query made of its pieces' embeddings and where it should be if every character
  took the same time (the centre of its characters within the sentence); the attention over the frames has
  a Gaussian prior around that place (its width learned) plus content attention, so the head learns to
  find the word near where it must be. A word is judged against the sentence: the classifier sees the
  word's pooled states, their difference from the sentence's mean word, and the query. This needs no
  alignment model and no ASR output at training time; at inference the words come from the transcript (or
  from the request). Forced alignment from the CTC head was the alternative: it needs a CTC head good
  enough to align from the start of training and couples the emphasis head's quality to the ASR head's,
  which the ablation must be free to switch off.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PretrainedConfig, PreTrainedModel

from steps.tasks.prosody_ser.backbone import build_encoder, encode
from steps.tasks.prosody_ser.tokenizer import BLANK, PAD

IGNORE = -100


class ProsodySERConfig(PretrainedConfig):
    model_type = "speechops_prosody_ser"

    def __init__(self, backbone: dict | None = None, emotion_labels: list[str] | None = None, vocab_size: int = 256,
                 head_dim: int = 256, ctc_hidden_dim: int = 0, dropout: float = 0.1, use_ser: bool = True,
                 use_asr: bool = True, use_prosody: bool = True, alpha_ser: float = 1.0, alpha_asr: float = 0.1,
                 alpha_prosody: float = 0.1, ctc_entropy_weight: float = 0.0, ctc_blank_penalty: float = 0.0,
                 ctc_blank_threshold: float = 0.3, ctc_label_smoothing: float = 0.0, ctc_confidence_penalty: float = 0.0,
                 prosody_pos_weight: float = 2.0, backbone_lr: float = 1e-5, head_lr: float = 5e-5, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone or {}
        self.emotion_labels = list(emotion_labels or [])
        self.vocab_size, self.head_dim, self.dropout = vocab_size, head_dim, dropout
        self.ctc_hidden_dim = ctc_hidden_dim
        self.use_ser, self.use_asr, self.use_prosody = use_ser, use_asr, use_prosody
        self.alpha_ser, self.alpha_asr, self.alpha_prosody = alpha_ser, alpha_asr, alpha_prosody
        self.ctc_entropy_weight, self.ctc_blank_penalty = ctc_entropy_weight, ctc_blank_penalty
        self.ctc_blank_threshold, self.ctc_label_smoothing = ctc_blank_threshold, ctc_label_smoothing
        self.ctc_confidence_penalty, self.prosody_pos_weight = ctc_confidence_penalty, prosody_pos_weight
        self.backbone_lr, self.head_lr = backbone_lr, head_lr


def masked_stats(hidden: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    count = weights.sum(1).clamp_min(1.0)
    mean = (hidden * weights).sum(1) / count
    var = (((hidden - mean.unsqueeze(1)) ** 2) * weights).sum(1) / count
    return mean, torch.sqrt(var + 1e-5)


class EmotionHead(nn.Module):
    def __init__(self, d_model: int, head_dim: int, labels: int, dropout: float):
        super().__init__()
        self.attention = nn.Linear(d_model, 1)
        self.classifier = nn.Sequential(nn.LayerNorm(3 * d_model), nn.Dropout(dropout),
                                        nn.Linear(3 * d_model, head_dim), nn.GELU(), nn.Dropout(dropout),
                                        nn.Linear(head_dim, labels))

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mean, std = masked_stats(hidden, mask)
        scores = self.attention(hidden).squeeze(-1).masked_fill(~mask, torch.finfo(hidden.dtype).min)
        attended = (scores.softmax(-1).unsqueeze(-1) * hidden).sum(1)
        return self.classifier(torch.cat([mean, std, attended], dim=-1))


class EmphasisHead(nn.Module):
    """Located attention pooling per word (see the module docstring)."""

    def __init__(self, d_model: int, head_dim: int, vocab_size: int, dropout: float):
        super().__init__()
        self.pieces = nn.Embedding(vocab_size, head_dim, padding_idx=PAD)
        self.query = nn.Linear(head_dim + 2, head_dim)
        self.key = nn.Linear(d_model, head_dim)
        self.value = nn.Linear(d_model, head_dim)
        # the prior's sharpness 1 / (2 sigma^2) over relative time; sigma starts at 0.08 of the clip
        self.log_sharpness = nn.Parameter(torch.tensor(math.log(1 / (2 * 0.08 ** 2))))
        self.classifier = nn.Sequential(nn.LayerNorm(3 * head_dim), nn.Dropout(dropout),
                                        nn.Linear(3 * head_dim, head_dim), nn.GELU(), nn.Linear(head_dim, 1))

    def forward(self, hidden, mask, word_pieces, word_position, word_mask) -> torch.Tensor:
        """hidden (B, T, D), mask (B, T); word_pieces (B, W, P) piece ids (PAD-padded); word_position (B, W, 2):
        (centre, share) of the word's characters in the sentence, 0..1; word_mask (B, W). Returns logits (B, W)."""
        piece_mask = (word_pieces != PAD).unsqueeze(-1).to(hidden.dtype)
        spelled = (self.pieces(word_pieces) * piece_mask).sum(2) / piece_mask.sum(2).clamp_min(1.0)
        query = self.query(torch.cat([spelled, word_position.to(hidden.dtype)], dim=-1))  # (B, W, H)
        keys, values = self.key(hidden), self.value(hidden)  # (B, T, H)
        content = torch.einsum("bwh,bth->bwt", query, keys) / math.sqrt(query.shape[-1])
        lengths = mask.sum(1, keepdim=True).clamp_min(2).to(hidden.dtype)  # (B, 1)
        steps = torch.arange(hidden.shape[1], device=hidden.device, dtype=hidden.dtype).unsqueeze(0)
        where = (steps / (lengths - 1)).unsqueeze(1)  # (B, 1, T): relative time of each frame
        prior = -self.log_sharpness.exp() * (where - word_position[..., :1].to(hidden.dtype)) ** 2
        scores = (content + prior).masked_fill(~mask.unsqueeze(1), torch.finfo(hidden.dtype).min)
        pooled = torch.einsum("bwt,bth->bwh", scores.softmax(-1), values)
        weights = word_mask.unsqueeze(-1).to(hidden.dtype)
        sentence = (pooled * weights).sum(1, keepdim=True) / weights.sum(1, keepdim=True).clamp_min(1.0)
        return self.classifier(torch.cat([pooled, pooled - sentence, query], dim=-1)).squeeze(-1)


def ctc_head(d_model: int, hidden_dim: int, vocab_size: int, dropout: float) -> nn.Sequential:
    """Per frame, logits over the pieces: a linear layer (``hidden_dim`` 0) or a one-hidden-layer MLP."""
    if not hidden_dim:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(d_model, vocab_size))
    return nn.Sequential(nn.Linear(d_model, hidden_dim), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(hidden_dim, vocab_size))


def ctc_loss(logits: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, config: ProsodySERConfig) -> torch.Tensor:
    """CTC (blank 4) plus the seed's regularisers, each over the clip's real frames:

    * ``ctc_entropy_weight``: minus the weight times the mean per-frame entropy (rewards spread posteriors);
    * ``ctc_blank_penalty`` x max(0, mean blank probability - ``ctc_blank_threshold``) (fights blank collapse;
      note that correct CTC output at 50 frames/s is mostly blank, so a low threshold fights the right answer too);
    * ``ctc_label_smoothing`` e: (1 - e) x CTC + e x the cross-entropy to a uniform distribution;
    * ``ctc_confidence_penalty``: the weight times the mean probability of each frame's best non-blank piece.
    """
    log_probs = logits.float().log_softmax(-1)
    lengths = mask.sum(1)
    target_mask = labels != IGNORE
    targets = labels.masked_fill(~target_mask, 0)
    loss = F.ctc_loss(log_probs.transpose(0, 1), targets, lengths, target_mask.sum(1), blank=BLANK,
                      reduction="mean", zero_infinity=True)
    frames = mask.unsqueeze(-1).float()
    count = frames.sum().clamp_min(1.0)
    probs = log_probs.exp()
    if config.ctc_label_smoothing:
        uniform = -(log_probs * frames).sum() / (count * log_probs.shape[-1])
        loss = (1 - config.ctc_label_smoothing) * loss + config.ctc_label_smoothing * uniform
    if config.ctc_entropy_weight:
        entropy = -((probs * log_probs).sum(-1, keepdim=True) * frames).sum() / count
        loss = loss - config.ctc_entropy_weight * entropy
    if config.ctc_blank_penalty:
        blank = (probs[..., BLANK:BLANK + 1] * frames).sum() / count
        loss = loss + config.ctc_blank_penalty * torch.relu(blank - config.ctc_blank_threshold)
    if config.ctc_confidence_penalty:
        best = (probs[..., BLANK + 1:].max(-1, keepdim=True).values * frames).sum() / count
        loss = loss + config.ctc_confidence_penalty * best
    return loss


class ProsodySERModel(PreTrainedModel):
    """``input_features``/``feature_mask``: the encoder's input (Whisper's log-mel, or a waveform) and its mask
    (see ``backbone.Features``)."""

    config_class = ProsodySERConfig
    base_model_prefix = "prosody_ser"
    main_input_name = "input_features"

    def __init__(self, config: ProsodySERConfig):
        super().__init__(config)
        self.encoder = build_encoder(config.backbone)
        d_model = self.encoder.config.hidden_size
        self.emotion_head = EmotionHead(d_model, config.head_dim, max(1, len(config.emotion_labels)), config.dropout)
        self.ctc_head = ctc_head(d_model, config.ctc_hidden_dim, config.vocab_size, config.dropout)
        self.emphasis_head = EmphasisHead(d_model, config.head_dim, config.vocab_size, config.dropout)
        self.post_init()

    def _init_weights(self, module):  # the encoder's weights come from the checkpoint; heads keep torch's init
        pass

    def optimizer_groups(self, weight_decay: float):
        """The backbone and the heads at their own learning rates (``config.backbone_lr`` / ``head_lr``)."""
        backbone = [p for p in self.encoder.parameters() if p.requires_grad]
        heads = [p for name, p in self.named_parameters() if not name.startswith("encoder.") and p.requires_grad]
        return [{"params": backbone, "lr": self.config.backbone_lr, "weight_decay": weight_decay},
                {"params": heads, "lr": self.config.head_lr, "weight_decay": weight_decay}]

    def encode(self, input_features: torch.Tensor, feature_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return encode(self.encoder, input_features, feature_mask)

    def forward(self, input_features, feature_mask, emotion_labels=None, labels=None, word_pieces=None,
                word_position=None, word_mask=None, emphasis_labels=None, **_):
        config = self.config
        hidden, mask = self.encode(input_features, feature_mask)
        out: dict[str, torch.Tensor] = {}
        losses = []
        if config.use_ser:
            out["emotion_logits"] = self.emotion_head(hidden, mask)
            if emotion_labels is not None:
                losses.append(config.alpha_ser * F.cross_entropy(out["emotion_logits"].float(), emotion_labels))
        if config.use_asr:
            out["ctc_logits"] = self.ctc_head(hidden)
            if labels is not None:
                losses.append(config.alpha_asr * ctc_loss(out["ctc_logits"], mask, labels, config))
        if config.use_prosody and word_pieces is not None and word_pieces.shape[1] > 0:
            out["emphasis_logits"] = self.emphasis_head(hidden, mask, word_pieces, word_position, word_mask)
            if emphasis_labels is not None:
                valid = emphasis_labels != IGNORE
                if valid.any():
                    weight = torch.tensor(config.prosody_pos_weight, device=hidden.device)
                    losses.append(config.alpha_prosody * F.binary_cross_entropy_with_logits(
                        out["emphasis_logits"][valid].float(), emphasis_labels[valid].float(), pos_weight=weight))
        if losses:
            out["loss"] = torch.stack(losses).sum()
        out["frames"] = mask.sum(1)
        return out


def word_positions(words: list[str]) -> list[tuple[float, float]]:
    """Per word, (centre, share) of its characters in the sentence (spaces between words count once)."""
    sizes = [max(1, len(w)) + 1 for w in words]
    total = float(sum(sizes)) or 1.0
    out, before = [], 0
    for size in sizes:
        out.append(((before + size / 2) / total, size / total))
        before += size
    return out
