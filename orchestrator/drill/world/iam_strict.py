"""IAM calls moto 5.2.5 lacks, added to the local AWS world (loaded by `procs.STRICT_MOTO`).

`orchestrate bootstrap` adds the `sts.amazonaws.com` audience to a GitHub OIDC provider that
exists without it; moto answers neither call below (its IAM responses have no such action), so
without this the path is untested. What is added, and the rule each follows (IAM API reference,
https://docs.aws.amazon.com/IAM/latest/APIReference/API_AddClientIDToOpenIDConnectProvider.html and
API_CreateOpenIDConnectProvider.html):

- AddClientIDToOpenIDConnectProvider: idempotent ("it does not fail or return an error if you add
  an existing client ID to the provider"); a client id is 1-255 characters (InvalidInput); at most
  100 client ids per provider ("You cannot register more than 100 client IDs with a single IAM
  OIDC provider": LimitExceeded); an unknown provider is NoSuchEntity.
- RemoveClientIDFromOpenIDConnectProvider: idempotent in the same way (removing an id that is not
  there is not an error); an unknown provider is NoSuchEntity.
"""

from __future__ import annotations

from typing import Any

MAX_CLIENT_IDS = 100
MAX_CLIENT_ID_LENGTH = 255


def install() -> None:
    """Add the calls to moto's IAM responses (idempotent)."""
    from moto.core.responses import EmptyResult
    from moto.iam.exceptions import InvalidInput, LimitExceededException, NotFoundException
    from moto.iam.responses import IamResponse

    if getattr(IamResponse, "_orchestrate_oidc", False):
        return

    def _provider(self: Any) -> Any:
        arn = self._get_param("OpenIDConnectProviderArn")
        provider = self.backend.open_id_providers.get(arn)
        if provider is None:
            raise NotFoundException(f"OpenIDConnect Provider not found for arn {arn}")
        return provider

    def _client_id(self: Any) -> str:
        client_id = self._get_param("ClientID") or ""
        if not 1 <= len(client_id) <= MAX_CLIENT_ID_LENGTH:
            raise InvalidInput(f"ClientID must be 1 to {MAX_CLIENT_ID_LENGTH} characters long")
        return str(client_id)

    def add_client_id_to_open_id_connect_provider(self: Any) -> Any:
        provider = _provider(self)
        client_id = _client_id(self)
        if client_id not in provider.client_id_list:
            if len(provider.client_id_list) >= MAX_CLIENT_IDS:
                raise LimitExceededException(
                    f"Cannot exceed quota for ClientIdsPerOpenIdConnectProvider: {MAX_CLIENT_IDS}")
            provider.client_id_list = [*provider.client_id_list, client_id]
        return EmptyResult()

    def remove_client_id_from_open_id_connect_provider(self: Any) -> Any:
        provider = _provider(self)
        client_id = _client_id(self)
        provider.client_id_list = [c for c in provider.client_id_list if c != client_id]
        return EmptyResult()

    for fn in (add_client_id_to_open_id_connect_provider, remove_client_id_from_open_id_connect_provider):
        setattr(IamResponse, fn.__name__, fn)
    setattr(IamResponse, "_orchestrate_oidc", True)  # noqa: B010 - a flag on a foreign class
