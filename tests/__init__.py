"""The test suite: support/, contract/, unit/, features/, deploy/."""
