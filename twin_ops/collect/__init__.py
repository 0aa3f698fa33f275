"""Collect: turn an author's configured sources into raw documents in the crawl store.

One module per concern:

* ``authors``     — ``include/authors/<id>.yaml`` → a validated ``domain.Author``
* ``extract``     — one HTML page → title, subtitle, date, tags, canonical URL, Markdown-like body
* ``spider``      — the Scrapy spider: discovery (links, feeds, sitemaps), scope, quarantine routing
* ``politeness``  — Scrapy components: scope guard, retry backoff, loop-aware redirects, throttle
* ``web``         — Scrapy settings from params.yaml and the one in-process crawl
* ``repos``       — git repositories (URL or local path) → one document per text file
* ``exports``     — local files and LinkedIn exports
* ``results``     — what a crawl gathered, with the counters the progress display shows
* ``store``       — the crawl store: incremental revisions, dedup, quarantine, atomic writes
* ``run``         — one author's whole crawl, as the CLI (and so DVC and Airflow) runs it
"""
