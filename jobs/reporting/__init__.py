"""The nightly report (:mod:`jobs.reporting.nightly`): HTML and JSON per date, for people."""
