"""The demo site, a product feature: Wren Halvorsen's blog for `twin-ops demo-site serve` and `make demo`.

* ``site``   — renders ``include/demo_site/content`` through the Jinja2 templates in ``templates/``
  into static files (posts, index/tag pages, Medium- and Substack-like pages, feeds, sitemap,
  robots.txt, a git repository served over dumb HTTP); also an N-post synthetic blog for benchmarks
* ``server`` — a static file server on 127.0.0.1 that answers conditional requests (ETag → 304)
"""
