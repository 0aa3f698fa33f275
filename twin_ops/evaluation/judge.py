"""Optional LLM-as-judge (off by default): an OpenAI-compatible endpoint scores each answer for
accuracy and style on a 1-3 scale, the LLM Engineer's Handbook's protocol.

The endpoint comes from the environment (JUDGE_BASE_URL, JUDGE_API_KEY), never from params.yaml.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from pydantic import BaseModel, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from twin_ops.config import JudgeParams
from twin_ops.errors import TwinOpsError

PROMPT = """You are an expert judge. Evaluate the quality of an answer to an instruction on two criteria.

1. Accuracy: How factually correct is the information presented in the answer? You are a technical expert in this topic.
Scale: 1 (Poor): contains factual errors or misleading information; 2 (Good): mostly accurate with minor errors or
omissions; 3 (Excellent): highly accurate and comprehensive.

2. Style: Is the tone and writing style appropriate for a blog post or social media content, and does it read like
the author's reference answer below? Simple but technical words, not academic or overly formal.
Scale: 1 (Poor): too formal, uses overly complex words; 2 (Good): good balance, sometimes overly complex;
3 (Excellent): perfectly accessible, engaging, in the author's voice.

Instruction: {instruction}

The author's own answer (reference): {reference}

Answer to evaluate: {answer}

Provide your evaluation in JSON format with the following structure:
{{"accuracy": {{"analysis": "...", "score": 0}}, "style": {{"analysis": "...", "score": 0}}}}"""


class JudgeFailed(TwinOpsError, RuntimeError):
    """The judge endpoint is missing, unreachable, or answered something that is not a valid verdict."""


class JudgeSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    judge_base_url: str | None = None
    judge_api_key: str | None = None


class _Criterion(BaseModel):
    analysis: str = ""
    score: int = Field(ge=1, le=3)


class Verdict(BaseModel):
    accuracy: _Criterion
    style: _Criterion


def parse_verdict(content: str) -> Verdict:
    match = re.search(r"\{.*\}", content, flags=re.DOTALL)
    if match is None:
        raise JudgeFailed(f"the judge's answer holds no JSON object: {content[:200]!r}")
    try:
        return Verdict.model_validate(json.loads(match.group(0)))
    except (json.JSONDecodeError, ValidationError) as exc:
        raise JudgeFailed(f"the judge's verdict is not valid ({exc}): {content[:200]!r}") from exc


def judge(
    params: JudgeParams,
    instructions: Sequence[str],
    references: Sequence[str],
    answers: Sequence[str],
    settings: JudgeSettings | None = None,
) -> dict[str, list[float]]:
    """Accuracy and style scores (1-3), one per answer (their means are the metrics)."""
    from openai import OpenAI, OpenAIError

    settings = settings or JudgeSettings()
    if not settings.judge_base_url:
        raise JudgeFailed("evaluation.judge.enabled is true but JUDGE_BASE_URL is not set")
    client = OpenAI(
        base_url=settings.judge_base_url,
        api_key=settings.judge_api_key or "unused",
        timeout=params.timeout_s,
        max_retries=params.max_retries,
    )
    verdicts = []
    for instruction, reference, answer in zip(instructions, references, answers, strict=True):
        prompt = PROMPT.format(instruction=instruction, reference=reference, answer=answer)
        try:
            response = client.chat.completions.create(
                model=params.model,
                messages=[{"role": "user", "content": prompt}],
                temperature=params.temperature,
                max_tokens=params.max_tokens,
            )
        except OpenAIError as exc:
            raise JudgeFailed(f"the judge at {settings.judge_base_url} failed: {exc}") from exc
        verdicts.append(parse_verdict(response.choices[0].message.content or ""))
    return {
        "judge_accuracy": [float(v.accuracy.score) for v in verdicts],
        "judge_style": [float(v.style.score) for v in verdicts],
    }
