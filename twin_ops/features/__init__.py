"""Features: clean → chunk → embed → index (Weaviate), and hybrid search over the index."""
