"""selfinstruct's training stage: LoRA SFT of a student on a generated corpus, and its evaluation."""
