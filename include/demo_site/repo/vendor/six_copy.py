# Vendored third-party code placeholder. Not written here and not maintained here;
# kept only so the build works offline. Crawlers and indexers should skip vendor/.
