"""Optional LLM-judged dialogue score through any OpenAI-compatible chat endpoint.

The rubric lives in ``omni/metrics/judge_rubric.md`` (0-10, after OmniFlatten's LLM-scored
chat quality). Each item ``{"context", "reference", "response"}`` is one chat completion
(temperature 0); the judge must answer ``{"score": N, "reason": ...}`` (a bare "score: N"
is accepted too). An unreachable endpoint or a judge whose every answer is unusable gives
``{"missing": reason}``: the score is missing, never 0. Standard library only (urllib).
"""
from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path

RUBRIC_PATH = Path(__file__).with_name("judge_rubric.md")
_SCORE = re.compile(r"score\W{0,4}(\d+(?:\.\d+)?)", re.IGNORECASE)


def chat_url(endpoint: str) -> str:
    """``http://host:port/v1`` (or a full ``.../chat/completions`` URL) → the chat completions URL."""
    if not endpoint.startswith(("http://", "https://")):
        raise ValueError(f"judge endpoint must be an http(s) URL like http://127.0.0.1:8000/v1, got {endpoint!r}")
    e = endpoint.rstrip("/")
    return e if e.endswith("/chat/completions") else e + "/chat/completions"


def parse_score(text: str) -> float:
    """The 0-10 score in a judge's answer; ``ValueError`` when there is none or it is out of range."""
    score = None
    m = re.search(r"\{.*\}", text, re.DOTALL)
    if m:
        try:
            score = float(json.loads(m.group(0))["score"])
        except (ValueError, KeyError, TypeError):
            score = None
    if score is None:
        m = _SCORE.search(text)
        if not m:
            raise ValueError(f"no score in the judge's answer: {text[:120]!r}")
        score = float(m.group(1))
    if not 0 <= score <= 10:
        raise ValueError(f"judge score {score} is outside 0-10")
    return score


def _prompt(item: dict) -> str:
    return (f"Conversation so far:\n{item.get('context') or '(none)'}\n\n"
            f"Reference reply:\n{item.get('reference') or '(none)'}\n\n"
            f"Assistant reply to grade:\n{item.get('response') or '(empty)'}")


def _ask(url: str, model: str, rubric: str, item: dict, api_key: str | None, timeout_s: float) -> str:
    body = json.dumps({"model": model, "temperature": 0, "max_tokens": 200,
                       "messages": [{"role": "system", "content": rubric},
                                    {"role": "user", "content": _prompt(item)}]}).encode()
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=timeout_s) as r:
        data = json.loads(r.read().decode())
    return data["choices"][0]["message"]["content"]


def judge_dialogues(items: list[dict], endpoint: str | None, model: str = "default", api_key: str | None = None,
                    timeout_s: float = 30.0, rubric_path: str | Path | None = None) -> dict:
    """Mean judge score (0-10) over ``items``; ``{"missing": reason}`` when it cannot be measured.

    Returns ``{"score_mean", "scores", "judged", "failed", "errors", "model", "endpoint"}``.
    A connection failure stops at the first item (the endpoint is down); a bad answer for one
    item is counted in ``failed`` and the rest are still judged."""
    if not endpoint:
        return {"missing": "no judge endpoint configured (eval.judge_endpoint)"}
    if not items:
        return {"missing": "nothing to judge (no assistant replies)"}
    url = chat_url(endpoint)
    rubric = Path(rubric_path or RUBRIC_PATH).read_text()
    scores, errors = [], []
    for item in items:
        try:
            scores.append(parse_score(_ask(url, model, rubric, item, api_key, timeout_s)))
        except urllib.error.HTTPError as e:
            errors.append(f"HTTP {e.code} from {url}")
        except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
            reason = getattr(e, "reason", e)
            return {"missing": f"judge endpoint {url} unreachable: {reason}"}
        except (ValueError, KeyError, IndexError, TypeError) as e:
            errors.append(str(e))
    if not scores:
        return {"missing": f"the judge gave no usable score for {len(items)} items: {errors[0]}"}
    return {"score_mean": sum(scores) / len(scores), "scores": scores, "judged": len(scores),
            "failed": len(errors), "errors": errors[:5], "model": model, "endpoint": url}
