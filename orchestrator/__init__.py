"""orchestrate: sequences the IoT platform's Pulumi stacks across regions.

Importing this package must stay cheap: `orchestrate --help` never imports pulumi or pulumi_aws.
"""

__version__ = "0.1.0"
