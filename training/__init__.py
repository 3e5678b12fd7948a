"""Training drafts for a target: `specdec distill` (corpus, the distillation loop, held-out figures, the
model card). Knows transformers and torch; nothing of the services, the wire or the orchestrator."""
