"""Collect: turn an author's configured sources into raw documents in the crawl store.

One module per concern:

* ``authors``     — ``include/authors/<id>.yaml`` → a validated ``domain.Author``
* ``extract``     — one HTML page → title, subtitle, date, tags, canonical URL, Markdown-like body
* ``articles``    — is a fetched page one piece of writing? (keep / skip with a reason) and its links
* ``memo``        — the last crawl's verdict per page, so a page answered 304 is not analysed again
* ``spider``      — the Scrapy spider: discovery (links, feeds, sitemaps), scope, quarantine routing
* ``politeness``  — Scrapy components: scope guard, retry backoff, loop-aware redirects, throttle
* ``web``         — Scrapy settings from params.yaml and the one in-process crawl
* ``repos``       — git repositories (URL or local path) → one document per text file
* ``exports``     — local files and LinkedIn exports
* ``results``     — what a crawl gathered (documents, quarantined, skipped), its counters and ledger
* ``store``       — the crawl store: incremental revisions, dedup, quarantine, atomic writes
* ``run``         — one author's whole crawl, as the CLI (and so DVC and Airflow) runs it
"""
