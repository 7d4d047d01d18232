"""How a stack runs: the Engine protocol and its types; `pulumi` is the only importer of pulumi.automation."""
