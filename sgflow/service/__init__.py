"""The REST service: FastAPI app, settings, errors, auth and API keys, programs.

- :func:`create_app`: the application (``/v1`` routers, ``/healthz``, ``/readyz``, ``/docs``)
- :class:`Settings`: every setting, from ``SGFLOW_*`` variables
- :class:`ApiError`: raise it from a route; one set of handlers turns it into
  ``{"error": {"code", "message", "field", "limit", "hint"}}``
- :class:`KeyStore`, :class:`ApiKey`: tenants' API keys, stored hashed
- :class:`ProgramStore`, :class:`StoredProgram`: programs as immutable ``name@version``

(the stores are :mod:`sgflow.store`'s, re-exported here: the service reads and writes Redis
only through that package)
- :class:`Tenant`: who is calling
"""

from sgflow.service.app import create_app
from sgflow.service.auth import Tenant
from sgflow.service.errors import ApiError
from sgflow.settings import Settings
from sgflow.store import ApiKey, KeyStore, ProgramInfo, ProgramStore, StoredProgram

__all__ = [
    "ApiError",
    "ApiKey",
    "KeyStore",
    "ProgramInfo",
    "ProgramStore",
    "Settings",
    "StoredProgram",
    "Tenant",
    "create_app",
]
