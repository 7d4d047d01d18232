"""The local AWS world on 127.0.0.1: what `orchestrate drill --local` and every test tier run against.

The moto launcher and the calls moto lacks (`procs.STRICT_MOTO`: iot_plane, iam_strict,
retained_plane, global_tables, iot_jobs, iot_groups, iot_issuer), the one resource -> AWS-call mirror
(`mirror`), the stand-in engine that applies the real programs through it (`engine`), the one
Route 53 model (`route53_model`) and the DNS server answering from it (`dns`), the ARC cluster
(`arc`), each region's IoT Core (mosquitto behind `iotdoor`/`authfront`, authorised by `iotpolicy`,
throttled by `admission`), the regions' services (`services`, `c2d`, `outbox_world`, `cloudwatch`,
`device_services`), the devices (`fleet`, `lightfleet`, `netstub`), PKI (`pki`) and the registry of
every AWS limit the world enforces (`limits`).

Import rule (tests/test_lint.py): only the drill (`orchestrator/drill/`), the tests and `bench/`
import this package. The product (the rest of `orchestrator/`, `programs/`) never does, and
neither does the canary the platform deploys (`drill/canary.py`, `drill/canary_handler.py`).
"""
