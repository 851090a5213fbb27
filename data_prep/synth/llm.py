"""Script writer for any OpenAI-compatible chat endpoint (vLLM, Ollama, llama.cpp server, ...).

``POST {base_url}/chat/completions`` asking for a JSON object; the answer is validated against
:class:`~data_prep.synth.scripts.Script`. Transport errors, HTTP 429 and 5xx are retried with
exponential back-off; a malformed or off-schema answer is rejected with its reason and asked
again, up to ``max_attempts``; after that :class:`ScriptRejected` carries every reason.
:meth:`OpenAIWriter.write_many` runs requests with bounded concurrency and a shared rate limit,
and keeps going past rejected items. API key: ``$OMNI_LLM_API_KEY`` (optional for local servers).
"""
from __future__ import annotations

import json
import os
import re
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from pydantic import ValidationError

from omni.config import EMOTIONS, PITCHES, SPEEDS, SynthConfig

from .scripts import EVENT_TAGS, KEYS, Script

SYSTEM_PROMPT = (
    "You write short spoken dialogues between a user and a voice assistant. Answer with ONE JSON object only, "
    'no prose: {"scenario": str, "topic": str, "music": null or {"tempo_bpm": int 40-200, "key": one of '
    f"{list(KEYS)}, \"mode\": \"major\"|\"minor\", \"timbre\": one of [piano, organ, pluck, pad, musicbox, brass]}}, "
    '"turns": [{"speaker": "user"|"assistant", "text": str, "emotion": one of '
    f"{list(EMOTIONS)}, \"pitch\": one of {list(PITCHES)}, \"speed\": one of {list(SPEEDS)}, "
    f"\"event\": null or one of {list(EVENT_TAGS)}}}]}}. The user speaks first and speakers alternate. "
    "Write numbers as words. Texts are natural, spoken, under 40 words.")
SCENARIO_HINTS = {
    "chitchat": "everyday small talk about hobbies, plans, food or places.",
    "emotion": "the user clearly expresses an emotion; the assistant answers with a fitting emotion and style.",
    "event": "a sound happens in the user's room (set 'event' on the user turn that reacts to it).",
    "music": "music plays in the user's room (fill 'music'); they talk about how it sounds.",
}


class ScriptRejected(RuntimeError):
    """Every attempt gave a malformed / off-schema answer (or the server kept failing)."""

    def __init__(self, reasons: list[str]):
        self.reasons = reasons
        super().__init__("script rejected: " + " | ".join(reasons))


class _RateLimiter:
    """At most ``rate_per_s`` request starts per second across threads (None = unlimited)."""

    def __init__(self, rate_per_s: float | None):
        self.interval_s = 1.0 / rate_per_s if rate_per_s else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval_s:
            return
        with self._lock:
            now = time.monotonic()
            at = max(now, self._next)
            self._next = at + self.interval_s
        if at > now:
            time.sleep(at - now)


def parse_script(content: str, scenario: str, n_turns: int | None = None) -> Script:
    """Validate a model answer; raises ValueError with the reason (malformed / off-schema)."""
    text = content.strip()
    fence = re.search(r"```(?:json)?\s*(.*?)```", text, re.S)
    if fence:
        text = fence.group(1)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"malformed JSON ({e.msg} at char {e.pos}): {content[:80]!r}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"off-schema: expected a JSON object, got {type(obj).__name__}")
    obj.setdefault("scenario", scenario)
    try:
        script = Script.model_validate(obj)
    except ValidationError as e:
        errs = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors()[:3])
        raise ValueError(f"off-schema: {errs}") from None
    if script.scenario != scenario:
        raise ValueError(f"off-schema: asked for scenario {scenario!r}, got {script.scenario!r}")
    if n_turns is not None and len(script.turns) != n_turns:
        raise ValueError(f"off-schema: asked for {n_turns} turns, got {len(script.turns)}")
    return script


class OpenAIWriter:
    def __init__(self, base_url: str, model: str, api_key: str | None = None, *, timeout_s: float = 60.0,
                 max_attempts: int = 3, backoff_s: float = 0.5, rate_per_s: float | None = None,
                 max_concurrency: int = 4, temperature: float = 0.9):
        if not base_url or not model:
            raise ValueError("the OpenAI-compatible writer needs synth.llm_base_url (e.g. http://127.0.0.1:8000/v1) "
                             "and synth.llm_model")
        self.base_url, self.model = base_url.rstrip("/"), model
        self.api_key = api_key if api_key is not None else os.environ.get("OMNI_LLM_API_KEY")
        self.timeout_s, self.max_attempts, self.backoff_s = timeout_s, max_attempts, backoff_s
        self.max_concurrency, self.temperature = max_concurrency, temperature
        self._limiter = _RateLimiter(rate_per_s)
        self._sem = threading.BoundedSemaphore(max_concurrency)
        self.stats = {"requests": 0, "retries": 0, "rejected_answers": 0}

    def _request(self, body: dict) -> str:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(f"{self.base_url}/chat/completions", data=json.dumps(body).encode(),
                                     headers=headers, method="POST")
        with self._sem:
            self._limiter.wait()
            self.stats["requests"] += 1
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                payload = json.loads(resp.read())
        try:
            return payload["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise ValueError(f"malformed response: no choices[0].message.content in {str(payload)[:80]!r}") from None

    def write(self, scenario: str, n_turns: int, seed: int | None = None) -> Script:
        """One validated script; raises :class:`ScriptRejected` after ``max_attempts``."""
        user = (f"Scenario: {scenario} - {SCENARIO_HINTS.get(scenario, '')} Write exactly {n_turns} turns. "
                f'Set "scenario" to "{scenario}".')
        body = {"model": self.model, "temperature": self.temperature, "response_format": {"type": "json_object"},
                "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]}
        if seed is not None:
            body["seed"] = int(seed)
        reasons: list[str] = []
        for attempt in range(self.max_attempts):
            try:
                return parse_script(self._request(body), scenario, n_turns)
            except ValueError as e:  # malformed / off-schema answer: reject it, ask again
                self.stats["rejected_answers"] += 1
                reasons.append(f"attempt {attempt + 1}: {e}")
            except urllib.error.HTTPError as e:
                reasons.append(f"attempt {attempt + 1}: HTTP {e.code}")
                if e.code < 500 and e.code != 429:
                    break  # a client error will not fix itself
            except (urllib.error.URLError, TimeoutError, OSError) as e:
                reasons.append(f"attempt {attempt + 1}: {type(e).__name__}: {getattr(e, 'reason', e)}")
            if attempt + 1 < self.max_attempts:
                self.stats["retries"] += 1
                time.sleep(self.backoff_s * 2 ** attempt)
        raise ScriptRejected(reasons)

    def write_many(self, jobs: list[tuple[str, int, int | None]]) -> tuple[list[Script | None], list[dict]]:
        """Scripts for ``[(scenario, n_turns, seed)]`` in order (None where rejected) and the
        rejects ``[{"index", "reasons"}]``. At most ``max_concurrency`` requests in flight."""
        results: list[Script | None] = [None] * len(jobs)
        rejects: list[dict] = []

        def run(i):
            try:
                results[i] = self.write(*jobs[i])
            except ScriptRejected as e:
                rejects.append({"index": i, "reasons": e.reasons})

        with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
            list(pool.map(run, range(len(jobs))))
        return results, sorted(rejects, key=lambda r: r["index"])


_WRITERS: dict[tuple, OpenAIWriter] = {}


def get_writer(cfg: SynthConfig) -> OpenAIWriter:
    """Process-wide writer for ``cfg`` (rate limit / concurrency from ``$OMNI_LLM_RPS`` /
    ``$OMNI_LLM_CONCURRENCY``)."""
    key = (cfg.llm_base_url, cfg.llm_model)
    if key not in _WRITERS:
        rps = os.environ.get("OMNI_LLM_RPS")
        _WRITERS[key] = OpenAIWriter(cfg.llm_base_url, cfg.llm_model, rate_per_s=float(rps) if rps else None,
                                     max_concurrency=int(os.environ.get("OMNI_LLM_CONCURRENCY", "4")))
    return _WRITERS[key]
