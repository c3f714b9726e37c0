"""Who may promote: signed stage assignments checked against a trust policy.

The policy (policy.py) is given to the sync, never read from the registry: per stage (and
model) pattern, the allowed signers. `TagTrust` (verify.py) checks a tag's signature with
git itself (`git verify-tag`: SSH via ssh-keygen and an allowed_signers file, or OpenPGP via
gpg and a keyring). In a protected stage only trusted assignments count (events.py folds the
rest out), so the newest trusted assignment keeps serving.
"""

from registry_sync.registry.trust.policy import TrustPolicy, TrustRule
from registry_sync.registry.trust.verify import SignatureCheck, TagTrust

__all__ = ["SignatureCheck", "TagTrust", "TrustPolicy", "TrustRule"]
