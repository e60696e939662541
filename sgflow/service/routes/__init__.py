"""The ``/v1`` routers, one module per resource (``openai``: the OpenAI-compatible
surface); :data:`api_router` mounts them all."""

from fastapi import APIRouter

from sgflow.service.routes import batches, extract, files, openai, programs, runs

__all__ = ["api_router"]

api_router = APIRouter(prefix="/v1")
api_router.include_router(programs.router)
api_router.include_router(runs.router)
api_router.include_router(extract.router)
api_router.include_router(batches.router)
api_router.include_router(openai.router)
api_router.include_router(files.router)
