// Programs the editor can start from: small, with short max_tokens, so runs are quick.

export const EXAMPLES: Array<{ name: string; source: string }> = [
  {
    name: "Support reply (select + JSON)",
    source: `# Classify a message, then draft a short structured reply.
program: support-reply
version: 1
description: Classify a customer message and draft a short JSON reply.
inputs:
  type: object
  properties:
    message: {type: string, minLength: 1, maxLength: 2000, description: what the customer wrote}
    customer: {type: string, maxLength: 80, description: their name (optional)}
  required: [message]
  additionalProperties: false
system: You are a helpful support assistant for a software company. Answer briefly.
steps:
  - id: topic
    user: "Message: {{ inputs.message }}\\n\\nWhich topic is it about?"
    select: [billing, bug, account, other]
  - id: reply
    user: >-
      Reply to {{ inputs.customer or 'the customer' }} as JSON with a short title and
      whether a human should follow up.
    gen:
      max_tokens: 60
      json_schema:
        type: object
        properties:
          title: {type: string, minLength: 3, maxLength: 40}
          follow_up: {type: boolean}
        required: [title, follow_up]
        additionalProperties: false
output:
  value:
    topic: "{{ steps.topic }}"
    reply: "{{ steps.reply }}"
`,
  },
  {
    name: "One-line answer (free text)",
    source: `# Answer a question in one short line of free text.
program: one-line-answer
version: 1
inputs:
  type: object
  properties:
    question: {type: string, minLength: 1, maxLength: 500}
  required: [question]
system: You answer in one short sentence.
steps:
  - id: answer
    user: "{{ inputs.question }}"
    gen: {max_tokens: 40, stop: ["\\n"]}
output:
  value: "{{ steps.answer }}"
`,
  },
];
