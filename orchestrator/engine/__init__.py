"""How a stack runs: the Engine protocol and its types (`types`), the Pulumi Automation API
implementation (`pulumi`) and the translation of its events into the preview model (`events`).
This package is the only importer of `pulumi.automation` (tests/test_lint.py checks it)."""
