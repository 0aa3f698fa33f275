"""Evaluation, gate and promotion: only a better twin reaches production.

candidate.py   register the trained stage as the registry's ``candidate`` (artifacts snapshotted, lineage)
samples.py     the held-out samples and the author's training text
lm.py          loading a contender, loss on the author's answers, greedy generation
stylometry.py  sentence length, type-token ratio, function words, Burrows' Delta
grounding.py   retrieved context (Weaviate, when reachable) and answer overlap
judge.py       optional LLM-as-judge (OpenAI-compatible endpoint), 1-3 accuracy + style
run.py         evaluate(): candidate, production and base on the same samples
gate.py        the promotion decision and its reasons
report.py      metrics JSON, comparison PNG, Markdown report
promote.py     move the aliases, swap the served model, roll back on failure
"""
