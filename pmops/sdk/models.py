"""The SDK's models are the contract's response models (one definition, shared with the API)."""

from pmops.contract.responses import *  # noqa: F403
