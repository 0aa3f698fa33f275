"""Data quality: Great Expectations suites for every dataset, validation reports, lineage."""
