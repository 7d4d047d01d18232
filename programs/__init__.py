"""Pulumi programs of the IoT platform: pure declarations of resources.

`programs.contract` (the typed stack arguments and their config encoding) imports nothing from
Pulumi, so the orchestrator may use it; every other module here is the only code that imports
pulumi_aws.
"""
