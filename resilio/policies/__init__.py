"""The built-in policies, one module each, and the parts a policy type of one's own is made of.

A plugin's policy subclasses :class:`Policy` and builds a :class:`Layer` per pipeline; a layer's
``run`` and ``run_async`` return the call's result or a :class:`Failure` (see "Writing a policy
type" in the plugins guide).
"""

from resilio._outcome import Failure
from resilio.policies._base import Env, Layer, Policy

__all__ = ["Env", "Failure", "Layer", "Policy"]
