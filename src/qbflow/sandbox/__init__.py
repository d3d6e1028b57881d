"""The sandbox: a local, wire-faithful QuickBooks Online (OAuth 2.0 + Accounting API v3).

    from qbflow.sandbox import Sandbox
    sandbox = Sandbox()          # an ASGI app; `qbflow sandbox` serves it on 127.0.0.1:8700
"""

from qbflow.sandbox.app import Sandbox

__all__ = ["Sandbox"]
