"""Serving: the twin as an HTTP RAG API on Ray Serve.

    retrieval.py   self-query, query expansion, hybrid search, fusion / cross-encoder rerank
    generation.py  the served model (registry alias → merged or base + adapter), prompts, batches, streams
    api.py         the FastAPI routes (OpenAI-compatible chat, /rag, /health), over any Backend
    local.py       a Backend in one process (the benchmark's baseline; unit tests)
    app.py         the Ray Serve deployments (Embedder, Retriever, Generator, Ingress) and builder
    ops.py         run locally, swap the model (user_config → reconfigure), health + smoke check
    client.py      a small HTTP client (the `twin-ops query` command, the swap check)

Heavy imports (torch, transformers, ray, weaviate) happen inside functions, as elsewhere.
"""
