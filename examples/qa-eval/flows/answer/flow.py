"""Ask a model every question of the dataset, then score its answers.

The model is a deterministic local stand-in (`LocalModel`) with the shape of an async LLM client,
so this example runs offline and gives the same numbers every time. To evaluate a real LLM, change
`make_model()`: return any object whose `async complete(prompt) -> str` awaits your client
(`openai.AsyncOpenAI`, `anthropic.AsyncAnthropic`, `litellm.acompletion`...). Nothing else
changes — caching, retries with backoff, rate limits (`limit="model"`, `[limits.model]` in
config/latent.toml) and MLflow spans already wrap the calls, and the rows run concurrently on one
event loop.
"""

from __future__ import annotations

import asyncio
import re
from typing import ClassVar, Literal

import pandas as pd
from pydantic import BaseModel, Field

from latent.prefect import checkpoint, flow, logger, params, task, unmapped


class ModelConfig(BaseModel):
    name: str
    temperature: float = Field(0.0, ge=0.0, le=2.0)


class ScoringConfig(BaseModel):
    method: Literal["exact", "token_f1"] = "token_f1"
    pass_threshold: float = Field(0.5, ge=0.0, le=1.0)


class AnswerConfig(BaseModel):
    """Typed parameters: config/global.yaml merged under flows/answer/parameters.yaml."""

    model: ModelConfig
    max_questions: int = Field(100, gt=0)
    prompt_template: str
    scoring: ScoringConfig = ScoringConfig()


class LocalModel:
    """A stand-in for an LLM: answers from a small built-in lookup table, deterministically."""

    KNOWLEDGE: ClassVar[dict[str, str]] = {
        "capital of france": "Paris",
        "capital of japan": "Tokyo",
        "largest ocean": "The Pacific",
        "through cairo": "The Nile river",
        "capital of australia": "Sydney",
        "kenya": "Africa",
        "symbol for gold": "Au",
        "red planet": "Mars",
        "plants absorb": "Carbon dioxide",
        "spider": "Eight legs",
        "boiling point of water": "100 degrees Celsius",
        "hardest natural": "Diamond",
        "first president": "George Washington",
        "berlin wall": "1989",
        "machu picchu": "The Inca",
        "declaration of independence": "Thomas Jefferson",
        "square root of 144": "12",
        "right angle": "90 degrees",
        "7 times 8": "54",
        "prime number after 7": "11",
        "pride and prejudice": "Jane Austen",
        "hamlet": "Shakespeare",
        "don quixote": "Spanish",
    }

    def __init__(self, name: str, temperature: float) -> None:
        self.name = name
        self.temperature = temperature

    async def complete(self, prompt: str) -> str:
        await asyncio.sleep(0.01)  # a real model takes a while; caching makes re-runs instant
        text = prompt.lower()
        for clue, answer in self.KNOWLEDGE.items():
            if clue in text:
                return answer
        return "I don't know"


def make_model(name: str, temperature: float) -> LocalModel:
    """The seam where a real LLM client goes (see the module docstring)."""
    return LocalModel(name, temperature)


def _tokens(text: str) -> list[str]:
    words = re.findall(r"[a-z0-9]+", text.lower())
    return [w for w in words if w not in {"the", "a", "an", "river", "empire"}]


@task("build_prompts")
def build_prompts(questions: pd.DataFrame) -> list[dict]:
    rows = questions.head(params.max_questions)
    logger.info(f"Building {len(rows)} prompts")
    return [
        {"id": int(row.id), "prompt": params.prompt_template.format(question=row.question)}
        for row in rows.itertuples()
    ]


@task("answer_question", span_type="LLM", limit="model")
async def answer_question(item: dict, model_name: str, temperature: float) -> dict:
    """One model call per question: row-level cached, so a re-run calls the model 0 times."""
    model = make_model(model_name, temperature)
    return {"id": item["id"], "answer": await model.complete(item["prompt"])}


@task("score_answers", output="scored")
def score_answers(questions: pd.DataFrame, answers: pd.DataFrame) -> pd.DataFrame:
    """Score each answer; a checkpoint makes an interrupted loop resume where it stopped."""
    method = params.scoring.method
    threshold = params.scoring.pass_threshold

    @checkpoint
    def judge(prediction: str, reference: str, method: str) -> float:
        # Where an LLM judge would go: slow and costly, so each verdict is checkpointed.
        predicted, expected = _tokens(prediction), _tokens(reference)
        if method == "exact":
            return float(predicted == expected)
        common = len(set(predicted) & set(expected))
        if not predicted or not expected or common == 0:
            return 0.0
        precision, recall = common / len(predicted), common / len(expected)
        return 2 * precision * recall / (precision + recall)

    merged = questions.merge(answers, on="id")
    merged["score"] = [
        judge(str(row.answer), str(row.reference), method) for row in merged.itertuples()
    ]
    merged["passed"] = merged["score"] >= threshold
    logger.info(f"Scored {len(merged)} answers, {int(merged['passed'].sum())} passed")
    return merged


@flow("answer", input=["questions"], output=["answers"], config_schema=AnswerConfig)
def answer(questions: pd.DataFrame) -> pd.DataFrame:
    prompts = build_prompts(questions)
    futures = answer_question.map(
        item=prompts,
        model_name=unmapped(params.model.name),
        temperature=unmapped(params.model.temperature),
    )
    answers = pd.DataFrame([future.result() for future in futures])
    score_answers(questions, answers)
    return answers
