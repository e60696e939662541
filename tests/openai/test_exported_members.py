"""The public surface of sgflow.openai is pinned: a change here is an API change."""

from __future__ import annotations

import sgflow.openai

EXPECTED = {
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
}


def test_the_public_surface_is_pinned() -> None:
    assert set(sgflow.openai.__all__) == EXPECTED
    assert all(hasattr(sgflow.openai, name) for name in EXPECTED)
