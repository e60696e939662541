"""The OpenAI-compatible surface's pure core: requests in, programs out, answers back.

A pure library (no HTTP server, Celery or Redis; the service's routes wire it): every
OpenAI request becomes a durable queued run of an sgflow program, exactly as
``POST /v1/extract`` does, and the run's record and events become OpenAI's answer.

- parse: :func:`parse_chat_request`, :func:`parse_responses_request` (pydantic models,
  lenient inside messages and tools, strict at the top level);
- plan: :func:`plan_chat`, :func:`plan_responses` → :class:`Plan` (the inline program and
  its inputs, ``Plan.run_body()``), :func:`plan_program_model` for ``program:NAME@V``;
- strict mode: :func:`check_strict` (OpenAI's documented subset);
- answer: :func:`chat_completion` / :class:`ChatStream`, :func:`response_object` /
  :class:`ResponsesStream`, from a :class:`RunRecord` and the run's events
  (:class:`RunFold`); errors in OpenAI's shape: :func:`openai_error`;
- files and batches (formats): :func:`file_object`, :func:`parse_batch_file`,
  :func:`batch_output_line`, :func:`batch_error_line`, :func:`batch_object`;
- ``GET /v1/models``: :func:`model_list`, :func:`parse_model_name`.
"""

from sgflow.openai.batches import (
    BATCH_STATUS,
    BatchLimits,
    BatchRequest,
    batch_error_line,
    batch_object,
    batch_output_line,
    file_object,
    parse_batch_file,
)
from sgflow.openai.chat_build import ChatStream, answer_headers, chat_completion
from sgflow.openai.chat_request import ChatRequest, parse_chat_request
from sgflow.openai.chat_translate import plan_chat
from sgflow.openai.errors import OpenAIErrorAnswer, openai_error, pointer_to_param
from sgflow.openai.model_list import (
    ProgramModel,
    model_list,
    model_object,
    parse_model_name,
    program_model_id,
)
from sgflow.openai.outcome import RunFold, RunRecord
from sgflow.openai.plan import Plan, PlanOptions
from sgflow.openai.program_models import plan_program_model, program_inputs
from sgflow.openai.responses_build import ResponsesStream, response_object
from sgflow.openai.responses_request import ResponsesRequest, parse_responses_request
from sgflow.openai.responses_translate import plan_responses
from sgflow.openai.strict import StrictProblem, check_strict

__all__ = [
    "BATCH_STATUS",
    "BatchLimits",
    "BatchRequest",
    "ChatRequest",
    "ChatStream",
    "OpenAIErrorAnswer",
    "Plan",
    "PlanOptions",
    "ProgramModel",
    "ResponsesRequest",
    "ResponsesStream",
    "RunFold",
    "RunRecord",
    "StrictProblem",
    "answer_headers",
    "batch_error_line",
    "batch_object",
    "batch_output_line",
    "chat_completion",
    "check_strict",
    "file_object",
    "model_list",
    "model_object",
    "openai_error",
    "parse_batch_file",
    "parse_chat_request",
    "parse_model_name",
    "parse_responses_request",
    "plan_chat",
    "plan_program_model",
    "plan_responses",
    "pointer_to_param",
    "program_inputs",
    "program_model_id",
    "response_object",
]
