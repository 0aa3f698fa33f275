"""Evaluation, gate and promotion: only a better twin reaches production.

candidate.py   register the trained stage as the registry's ``candidate`` (artifacts snapshotted, lineage)
samples.py     the held-out samples and the author's training text
lm.py          loading a contender, per-sample loss on the author's answers, greedy generation
stylometry.py  sentence length, type-token ratio, function words, Burrows' Delta (per-text counts)
repetition.py  distinct-2 and repeated 3-grams: does a text loop?
grounding.py   retrieved context (Weaviate, when reachable) and answer overlap
judge.py       optional LLM-as-judge (OpenAI-compatible endpoint), 1-3 accuracy + style
metrics.py     every metric's name, direction and scale of change
bootstrap.py   per-sample scores and paired bootstrap intervals (candidate vs production, vs base)
run.py         evaluate(): candidate, production and base on the same samples
gate.py        the promotion decision from the intervals, and its reasons
report.py      metrics JSON, comparison PNG, Markdown report
promote.py     move the aliases, swap the served model, roll back on failure
"""
