"""Tokenizer stage of ``prosody_ser``: a SentencePiece model for the CTC head, and the backbone's feature extractor.

The seed's special ids: unk 0, bos 1, eos 2, pad 3 and the CTC blank 4 (a user-defined piece, so it is
never produced from text). BPE by default, ``character_coverage`` 0.995 and no normalisation rule (the
seed's ``identity``); ``retrain_tokenizer: false`` packages an existing ``.model`` instead.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from steps.common.manifest import read_manifest, split_path
from steps.common.stage import StageError
from steps.tasks.prosody_ser.params import TokenizerParams

log = logging.getLogger(__name__)

MODEL_FILE = "spm.model"
SETTINGS_FILE = "ctc_text.json"
UNK, BOS, EOS, PAD, BLANK = 0, 1, 2, 3, 4
BLANK_PIECE = "<blank>"


def words_of(record, lowercase: bool) -> list[str]:
    """The record's words (the manifest's ``words``, else its transcript split on spaces) as the CTC head spells them."""
    words = record.extra.get("words") if hasattr(record, "extra") else None
    if not isinstance(words, list) or not words:
        words = record.text.split()
    words = [str(w) for w in words]
    return [w.lower() for w in words] if lowercase else words


class Pieces:
    """The SentencePiece model with the task's conventions: text <-> ids without the blank, words -> pieces."""

    def __init__(self, folder: Path):
        import sentencepiece as spm

        self.sp = spm.SentencePieceProcessor(model_file=str(Path(folder) / MODEL_FILE))
        settings = json.loads((Path(folder) / SETTINGS_FILE).read_text())
        self.lowercase = bool(settings["lowercase"])
        if self.sp.piece_to_id(BLANK_PIECE) != BLANK:
            raise StageError(f"the SentencePiece model has no {BLANK_PIECE} piece at id {BLANK} (the CTC blank)")

    def __len__(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, words: list[str]) -> list[int]:
        return self.sp.encode(" ".join(words))

    def encode_word(self, word: str) -> list[int]:
        return self.sp.encode(word) or [UNK]

    def decode(self, ids) -> str:
        return self.sp.decode([int(i) for i in ids if int(i) > BLANK])

    def labels(self) -> list[str]:
        """Per id, the text a CTC beam search emits ('▁' marks a word start; specials emit nothing)."""
        return ["" if i <= BLANK else self.sp.id_to_piece(i) for i in range(len(self))]


def train_sentencepiece(sentences: list[str], out: Path, params: TokenizerParams) -> None:
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_prefix=str(out / MODEL_FILE[:-6]), vocab_size=params.vocab_size,
        model_type=params.model_type, character_coverage=params.character_coverage,
        unk_id=UNK, bos_id=BOS, eos_id=EOS, pad_id=PAD, user_defined_symbols=[BLANK_PIECE],
        normalization_rule_name="identity", hard_vocab_limit=False, num_threads=1, minloglevel=2)


def build_tokenizer(params: TokenizerParams, data: Path, out: Path) -> dict:
    from steps.tasks.prosody_ser.backbone import feature_extractor

    records = read_manifest(split_path(data, "train"))
    sentences = [" ".join(words_of(r, params.lowercase)) for r in records]
    if params.retrain_tokenizer:
        train_sentencepiece(sentences, out, params)
        mode = "trained"
    else:
        source = Path(params.tokenizer_path).expanduser()
        if not source.is_file():
            raise StageError(f"tokenizer_path {source} does not exist (a SentencePiece .model file)")
        shutil.copy(source, out / MODEL_FILE)
        mode = "loaded"
    (out / SETTINGS_FILE).write_text(json.dumps({"lowercase": params.lowercase}))
    pieces = Pieces(out)
    feature_extractor(params.model_id, params.revision, params.window_seconds).save_pretrained(out)
    lengths = [len(pieces.encode(s.split())) for s in sentences]
    unknown = sum(pieces.encode(s.split()).count(UNK) for s in sentences)
    info = {"mode": mode, "vocab_size": len(pieces), "asked_vocab_size": params.vocab_size,
            "specials": {"unk": UNK, "bos": BOS, "eos": EOS, "pad": PAD, "blank": BLANK},
            "mean_tokens_per_utt": round(sum(lengths) / max(len(lengths), 1), 2), "max_tokens": max(lengths, default=0),
            "unknown_pieces_in_train": unknown}
    (out / "tokenizer_info.json").write_text(json.dumps(info, indent=2))
    log.info("SentencePiece (%s): %d pieces (asked %d), %.1f pieces per utterance", mode, len(pieces),
             params.vocab_size, info["mean_tokens_per_utt"])
    return {**info, "metrics": {"mode": mode, "vocab": len(pieces), "tokens/utt": info["mean_tokens_per_utt"]}}
