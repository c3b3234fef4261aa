"""Summarise the answer flow's scored output: overall and per category.

Reads `answer.scored` across flows: the dataset the answer flow saved, through its catalog.
What the flow returns lands in its MLflow run: the `summary` numbers as metrics
(`summary.pass_rate`, ...) and `by_category` as a table; per-category metrics are logged here.
"""

from __future__ import annotations

import pandas as pd

from latent.prefect import flow, log_metrics, logger, params, task


@task("accuracy_by_group")
def accuracy_by_group(scored: pd.DataFrame, group_by: str) -> pd.DataFrame:
    table = (
        scored.groupby(group_by)
        .agg(questions=("id", "count"), mean_score=("score", "mean"), pass_rate=("passed", "mean"))
        .reset_index()
        .sort_values(group_by)
    )
    return table.round(3)


@task("overall")
def overall(scored: pd.DataFrame) -> dict:
    return {
        "questions": len(scored),
        "mean_score": round(float(scored["score"].mean()), 3),
        "pass_rate": round(float(scored["passed"].mean()), 3),
    }


@flow("metrics", input=["answer.scored"], output=["summary", "by_category"])
def metrics(scored: pd.DataFrame) -> dict:
    model = params.get("answer.model", {})
    threshold = params.get("answer.scoring", {}).get("pass_threshold")
    by_category = accuracy_by_group(scored, params.group_by)
    # One metric per group and score, so MLflow's run comparison lines groups up across models.
    for row in by_category.to_dict(orient="records"):
        group = row[params.group_by]
        log_metrics({f"{group}.{score}": row[score] for score in ("pass_rate", "mean_score")})
    summary = {"model": model.get("name"), "pass_threshold": threshold, **overall(scored)}
    logger.info(
        f"{summary['model']}: pass rate {summary['pass_rate']:.0%} "
        f"on {summary['questions']} questions"
    )
    return {"summary": summary, "by_category": by_category}
