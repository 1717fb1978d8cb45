"""The fixed evaluator of voice_agent: simulated callers, the agent with the candidate prompt
(prompt.md) plus business.md, an LLM judge grading every criterion with a quote as evidence.

`python evaluate.py check` is the experiment's command (the prompt and the scenarios are well
formed); `python evaluate.py` is eval_command, the trusted score. Settings come from the
[env] table of autoresearch.toml (see autoresearch.objectives.prompts_eval for every name).
The candidate is data, never run: this process may hold the roles' keys (eval_secrets).
"""

from pathlib import Path

from autoresearch.objectives.prompts_eval import main

if __name__ == "__main__":
    raise SystemExit(main(Path(__file__).resolve().parent))
