"""The local harness: demo, dev stack and the in-process sensor driver. Never imported by production code."""
